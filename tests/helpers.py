"""Tiny real data and tiny spaces shared by the tests (not used by the tool itself)."""

import dataclasses
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np

from pcnas_tf.data import data_config
from pcnas_tf.data import fashion_mnist
from pcnas_tf.space import search_space as space_lib


def write_idx(path, array):
  """Writes `array` as a gzipped IDX file like Debian's."""
  magic = 0x800 + array.ndim
  header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_slice(directory, num_train, num_test, labels_offset=0):
  """The first images of each real Fashion-MNIST split, as IDX files; returns the train images."""
  os.makedirs(directory, exist_ok=True)
  train_images = None
  for split, count in (("train", num_train), ("test", num_test)):
    images, labels = fashion_mnist.read_split(data_config.DEBIAN_FASHION_MNIST, split)
    images_file, labels_file = fashion_mnist.FILES[split]
    write_idx(os.path.join(directory, images_file), images[:count, ..., 0])
    write_idx(os.path.join(directory, labels_file), labels[:count] + labels_offset)
    train_images = images[:num_train] if split == "train" else train_images
  return train_images


def tiny_fashion(root, num_train=600, num_test=100, **config):
  """A prepared slice of Fashion-MNIST under `root`, and its `DataConfig` (extra fields: `config`)."""
  write_fashion_slice(os.path.join(root, "idx"), num_train, num_test)
  config = data_config.DataConfig(data_dir=os.path.join(root, "tfds"), idx_dir=os.path.join(root, "idx"),
                           **config)
  fashion_mnist.prepare(config.data_dir, config.idx_dir)
  return config


def tiny_space():
  """Three mixops of two or three operators on 8-16 channels: a supergraph that traces in seconds."""
  choices = ("Identity", "MBConv_3_3", "MBConv_6_5")
  layers = (space_lib.LayerSpec(8, 1, choices), space_lib.LayerSpec(16, 2, choices),
            space_lib.LayerSpec(16, 1, choices[:2]))
  return space_lib.SearchSpace("tiny", 8, 1, None, layers, 16, "relu")


def tiny_search_config(root):
  """A search config under `root` that finishes in seconds: 3 mixops, 8x8 images, a few steps."""
  from pcnas_tf.searcher import search_config  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
  space_path = os.path.join(root, "tiny_space.json")
  with open(space_path, "w") as f:
    json.dump(tiny_space().to_json(), f)
  data_config = tiny_fashion(str(root), resolution=8, validation=128, deterministic=True)
  return search_config.SearchConfig(
      space=space_path, pool_size=2, num_samples=3, warmup_epochs=1, interval_epochs=1,
      steps_per_epoch=2, batch_size=16, constraint="flops", budget="0.6", eval_batch_size=32,
      eval_batches=2, strategy="one_device", checkpoint_every=1, data=data_config)


class FakeStandalone:
  """A stand-in for training a network of a ground-truth table alone: accuracy from the path's digits
  (a known ranking) and a seed-dependent wobble; it records its calls."""

  def __init__(self):
    self.calls = []

  def __call__(self, config, key, seed):
    self.calls.append(key)
    accuracy = 0.5 + sum(map(int, key)) / 40 + 0.001 * seed
    return {"test_top1": accuracy, "validation_top1": accuracy, "wall_s": 1.0,
            "flops": 1000 + sum(map(int, key)), "params": 10}


def tiny_macro_study(root, networks=12):
  """A ground-truth table of the macro space (width 0.1) on a slice of Fashion-MNIST at 8x8, filled by
  `FakeStandalone`, and a tiny search config on the same data: (table path, BuildConfig, SearchConfig)."""
  from pcnas_tf.searcher import search_config  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
  from pcnas_tf.studies import ground_truth_build  # pylint: disable=g-import-not-at-top
  data = tiny_fashion(str(root), num_train=400, num_test=100, resolution=8, validation=96,
                      deterministic=True)
  build = ground_truth_build.BuildConfig(width=0.1, data=data, networks=networks, second_seed_every=4)
  table = os.path.join(str(root), "gt.json")
  ground_truth_build.build(table, build, FakeStandalone(), progress=False)
  search = search_config.SearchConfig(
      space="macro", width=0.1, pool_size=2, num_samples=2, warmup_epochs=1, interval_epochs=0,
      steps_per_epoch=2, batch_size=16, constraint="flops", budget="0.5", eval_batch_size=32,
      eval_batches=1, strategy="one_device", checkpoint_every=1, data=data)
  return table, build, search


def write_truncated_keras(path, keep=0.5):
  """A tiny `.keras` archive at `path` whose zip is valid but whose `model.weights.h5` is cut to `keep` of
  its bytes: what an interrupted copy or a full disk leaves."""
  import zipfile  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  whole = f"{path}.whole.keras"
  keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(whole)
  with zipfile.ZipFile(whole) as archive:
    entries = {name: archive.read(name) for name in archive.namelist()}
  os.remove(whole)
  weights = entries["model.weights.h5"]
  entries["model.weights.h5"] = weights[:int(len(weights) * keep)]
  with zipfile.ZipFile(path, "w") as archive:
    for name, content in entries.items():
      archive.writestr(name, content)
  return str(path)


# Searches in other processes: one process, or a local multi-worker cluster (cluster_test, bench) --------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_TIMEOUT_S = 420  # per run: a hung collective fails the caller instead of stalling it

# Runs one search task: argv = work_dir, config JSON, output path ("TASK" becomes the task index), number
# of logical CPUs. Every task writes its own result there (non-chief tasks keep nothing in work_dir).
SEARCH_TASK = '''
import json, os, sys
if os.environ.get("PCNAS_PIN_TASKS"):  # bench: task i on core i, before TensorFlow starts its threads
  os.sched_setaffinity(0, {json.loads(os.environ["TF_CONFIG"])["task"]["index"] % os.cpu_count()}
                       if os.environ.get("TF_CONFIG") else {int(os.environ["PCNAS_PIN_TASKS"]) - 1})
if int(sys.argv[4]) > 1:
  import tensorflow as tf
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[4]))
from pcnas_tf.distribute import cluster
from pcnas_tf.data import data_config
from pcnas_tf import errors
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.searcher import remote_eval
from pcnas_tf.searcher import search_config
if os.environ.get("PCNAS_TEST_PULL_DELAY_S"):  # a slow training task, so that evaluation workers get trials
  import time
  _metrics = remote_eval.trial_metrics
  remote_eval.trial_metrics = lambda *args: time.sleep(float(os.environ["PCNAS_TEST_PULL_DELAY_S"])) or _metrics(*args)
fields = json.loads(sys.argv[2])
task = cluster.task_from_env() if os.environ.get(cluster.ENV) else cluster.Task()
try:
  # With KERASTUNER_* set (tuner id "chief"), the chief serves evaluation workers.
  serve = remote_eval.serve_settings_from_env(float(os.environ.get("PCNAS_TEST_LEASE", "3")), stop_grace=5.0)
  result = search_lib.run_search(search_config.SearchConfig.from_json(fields), sys.argv[1], progress=False,
                                 collective_timeout_s=60, serve=serve)
except errors.UserError as error:
  print(f"error: {error}", flush=True)
  sys.exit(2)
with open(sys.argv[3].replace("TASK", str(task.index)), "w") as f:
  json.dump({key: result.get(key) for key in ("final_pool", "paths_digest", "distribution", "log",
                                              "intervals", "remote_evaluation", "interval_eval_s")}, f)
'''


def search_task_argv(config, work_dir, output, logical_cpus=1):
  """The command that runs `config` in `work_dir` and writes the task's result summary to `output`."""
  import sys  # pylint: disable=g-import-not-at-top
  return [sys.executable, "-c", SEARCH_TASK, str(work_dir), json.dumps(config.to_json()), str(output),
          str(logical_cpus)]


ABSL_HINT = "Pass --helpshort or --helpfull to see help on flags."  # absl's line after a refused flag


def run_binary(module, *flags):
  """(exit code, the sentence it ended with, its stderr) of `python -m module flags...` run in the
  repository. The sentence is the last line of stderr, before absl's hint line if a flag was refused."""
  done = subprocess.run([sys.executable, "-m", module, *flags], capture_output=True, text=True, cwd=REPO,
                        timeout=300, env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"})
  lines = [line for line in done.stderr.splitlines() if line.strip() and line != ABSL_HINT]
  return done.returncode, lines[-1] if lines else "", done.stderr


def read_json(path):
  with open(path) as f:
    return json.load(f)


def run_search_process(config, work_dir, logical_cpus=2, timeout=CLUSTER_TIMEOUT_S):
  """Runs `config` in one process with `logical_cpus` CPU devices; returns its result summary."""
  import subprocess  # pylint: disable=g-import-not-at-top
  output = f"{work_dir}.json"
  done = subprocess.run(search_task_argv(config, work_dir, output, logical_cpus), cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)
  if done.returncode != 0:
    raise RuntimeError(f"search process failed ({done.returncode}):\n{done.stdout[-3000:]}"
                       f"{done.stderr[-3000:]}")
  return read_json(output)


@dataclasses.dataclass
class ClusterRun:
  """What `run_search_cluster` saw: exit codes, each task's result summary (None if it failed), log tails,
  and seconds from the start to the kill (if any) and to the last exit."""
  codes: list
  results: list
  logs: str
  killed_at_s: float | None
  finished_s: float


def run_search_cluster(config, work_dir, log_dir, num_workers=2, kill_after_checkpoint=None,
                       timeout=CLUSTER_TIMEOUT_S, eval_workers=0, pinned=False, pull_delay_s=None) -> ClusterRun:
  """Runs `config` (strategy multi_worker) as `num_workers` processes on 127.0.0.1.

  With `kill_after_checkpoint=n`, the last worker is killed once checkpoint n is in `work_dir`. With
  `eval_workers`, the chief serves potential evaluation on a free port and that many evaluation workers
  (`eval_worker_main`, logs in `log_dir`/eval<i>.log) pull trials as the other training tasks do.
  `pinned`: every task one thread, task i on core i. `pull_delay_s`: the training tasks that pull trials
  wait that long before scoring each (a trial is scored in milliseconds, so a task that is ready first
  could otherwise take every trial before an evaluation worker asks).
  """
  import time  # pylint: disable=g-import-not-at-top
  from tests import local_cluster  # pylint: disable=g-import-not-at-top
  output = f"{work_dir}_TASK.json"
  paths = [output.replace("TASK", str(i)) for i in range(num_workers)]
  for path in paths:
    if os.path.exists(path):
      os.remove(path)
  start, killed_at = time.monotonic(), None
  env, evaluators = ({**ONE_THREAD, "PCNAS_PIN_TASKS": "1"} if pinned else {}), []
  if pull_delay_s:
    env["PCNAS_TEST_PULL_DELAY_S"] = str(pull_delay_s)
  if eval_workers:
    port = free_port()
    env.update({k: v for k, v in kerastuner_env(port, "chief").items() if k.startswith("KERASTUNER_")})
    os.makedirs(log_dir, exist_ok=True)
    evaluators = [start_eval_worker(str(work_dir), port, f"eval{i}", os.path.join(log_dir, f"eval{i}.log"))
                  for i in range(eval_workers)]
  with local_cluster.LocalCluster(search_task_argv(config, work_dir, output), num_workers, log_dir,
                                  env=env, cwd=REPO) as workers:
    if kill_after_checkpoint is not None:
      target = os.path.join(work_dir, "checkpoints", f"ckpt-{kill_after_checkpoint:08d}")
      while (not os.path.exists(target) and time.monotonic() < start + timeout
             and all(p.poll() is None for p in workers.processes)):
        time.sleep(0.05)
      if not os.path.exists(target):
        raise RuntimeError(f"checkpoint {kill_after_checkpoint} never appeared:\n{workers.logs()}")
      workers.kill(num_workers - 1)
      killed_at = time.monotonic() - start
    codes = workers.wait(timeout)
  logs = workers.logs()
  for i, evaluator in enumerate(evaluators):  # told the search is over, they stop by themselves
    try:
      evaluator.wait(timeout=60)
    except subprocess.TimeoutExpired:
      evaluator.kill()
      evaluator.wait()
    logs += f"\n--- eval{i} (exit {evaluator.returncode}) ---\n" + _read(os.path.join(log_dir, f"eval{i}.log"))[-3000:]
  results = [read_json(p) if code == 0 and os.path.exists(p) else None for code, p in zip(codes, paths)]
  return ClusterRun(codes, results, logs, killed_at, time.monotonic() - start)


# Chief and evaluation workers on 127.0.0.1 (remote_eval_test and bench/multiworker_eval) -----------------

_CHIEF = """
import json, sys
from pcnas_tf.data import data_config
from pcnas_tf.searcher import remote_eval
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.searcher import search_config
fields = json.loads(sys.argv[2])
serve = remote_eval.serve_settings_from_env(float(sys.argv[3]), stop_grace=5.0)
search_lib.run_search(search_config.SearchConfig.from_json(fields), sys.argv[1], progress=False, serve=serve)
"""


def free_port():
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  from tests import local_cluster  # pylint: disable=g-import-not-at-top
  return local_cluster.free_ports(1)[0]


def kerastuner_env(port, tuner_id):
  """The environment of a keras-tuner chief (`tuner_id` "chief") or worker on 127.0.0.1:`port`."""
  return dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
              KERASTUNER_ORACLE_PORT=str(port))


ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _pinned(command, core):
  """`command` on CPU core `core` only (None: anywhere)."""
  return command if core is None else ["taskset", "-c", str(core % os.cpu_count()), *command]


def start_chief(config, work_dir, port, lease_timeout, log_path, core=None, env=None):
  """Starts a search serving its potential evaluation on 127.0.0.1:`port`; output goes to `log_path`."""
  return _start(_pinned([sys.executable, "-c", _CHIEF, work_dir, json.dumps(config.to_json()),
                         str(lease_timeout)], core), {**kerastuner_env(port, "chief"), **(env or {})},
                log_path)


def start_eval_worker(work_dir, port, tuner_id, log_path, rpc_timeout=20.0, core=None, env=None,
                      poll_interval=0.2):
  """Starts `eval_worker_main` for the chief on 127.0.0.1:`port`; output goes to `log_path`."""
  return _start(_pinned([sys.executable, "-m", "pcnas_tf.eval_worker_main", f"--work_dir={work_dir}",
                         f"--rpc_timeout={rpc_timeout}", "--connect_timeout=300",
                         f"--poll_interval={poll_interval}"],
                        core), {**kerastuner_env(port, tuner_id), **(env or {})}, log_path)


def _start(command, env, log_path):
  with open(log_path, "w") as log:  # the child keeps its own descriptor
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def run_served_search(config, work_dir, num_workers, lease_timeout=3.0, lost_trial=False,
                      timeout=900.0, pinned=False):
  """Runs a search as chief with `num_workers` evaluation workers on 127.0.0.1; returns a summary.

  With `lost_trial`, a worker dies holding the first trial: a keras-tuner client in this process takes
  the first trial the chief hands out and never reports it (nor asks again), and only then do the
  workers start, so the trial can come back only through its lease. (Killing a worker process once it
  logs a trial raced with its report: a candidate's trial is scored in milliseconds.) Output goes to
  `work_dir`.log, `work_dir`.worker<i>.log. Returns {"result" (search_result.json, None if the chief
  failed), "chief_rc", "worker_rcs", "lost" (the lost trial's id, or None), "wall_s", "logs"}.
  `pinned` (benchmarks): every process one thread, worker i on core i, the chief on the last core,
  workers asking every 0.05 s while there is no trial.
  """
  start, port = time.monotonic(), free_port()
  logs = {"chief": f"{work_dir}.log", **{f"worker{i}": f"{work_dir}.worker{i}.log"
                                         for i in range(num_workers)}}
  env = ONE_THREAD if pinned else None
  chief = start_chief(config, work_dir, port, lease_timeout, logs["chief"],
                      core=os.cpu_count() - 1 if pinned else None, env=env)
  lost, workers = None, {}
  try:
    if lost_trial:
      lost = _take_one_trial(port, chief, start + timeout)
    workers = {name: start_eval_worker(work_dir, port, name, logs[name], core=i if pinned else None,
                                       env=env, poll_interval=0.05 if pinned else 0.2)
               for i, name in enumerate(n for n in logs if n != "chief")}
    chief_rc = chief.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
    worker_rcs = {n: w.wait(timeout=60) for n, w in workers.items()}
  finally:
    for process in [chief, *workers.values()]:
      if process.poll() is None:
        process.kill()
        process.wait()
  result_path = os.path.join(work_dir, "search_result.json")
  result = None
  if chief_rc == 0:
    with open(result_path) as f:
      result = json.load(f)
  return {"result": result, "chief_rc": chief_rc, "worker_rcs": worker_rcs, "lost": lost,
          "wall_s": time.monotonic() - start, "logs": {n: _read(path) for n, path in logs.items()}}


def _take_one_trial(port, chief, deadline):
  """Asks the chief on 127.0.0.1:`port` for trials as "lost-worker" until one is handed out; its id."""
  from unittest import mock  # pylint: disable=g-import-not-at-top
  import grpc  # pylint: disable=g-import-not-at-top
  from pcnas_tf.searcher import remote_eval  # pylint: disable=g-import-not-at-top
  with mock.patch.dict(os.environ, kerastuner_env(port, "lost-worker")):
    client, _ = remote_eval.connect(5.0)  # each call waits at most 5 s for the chief
  while chief.poll() is None and time.monotonic() < deadline:
    try:
      trial = client.create_trial("lost-worker")
      if trial.status == "RUNNING":
        return trial.trial_id
    except grpc.RpcError:  # the chief is not serving yet
      pass
    time.sleep(0.05)
  raise RuntimeError("the chief handed out no trial")


def _read(path):
  with open(path) as f:
    return f.read()
