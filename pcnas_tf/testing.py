"""Tiny real data and tiny spaces shared by the tests (not used by the tool itself)."""

import dataclasses
import gzip
import json
import os

import numpy as np

from pcnas_tf import data
from pcnas_tf import fashion_mnist
from pcnas_tf import space as space_lib


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
    images, labels = fashion_mnist.read_split(data.DEBIAN_FASHION_MNIST, split)
    images_file, labels_file = fashion_mnist.FILES[split]
    write_idx(os.path.join(directory, images_file), images[:count, ..., 0])
    write_idx(os.path.join(directory, labels_file), labels[:count] + labels_offset)
    train_images = images[:num_train] if split == "train" else train_images
  return train_images


def tiny_fashion(root, num_train=600, num_test=100, **config):
  """A prepared slice of Fashion-MNIST under `root`, and its `DataConfig` (extra fields: `config`)."""
  write_fashion_slice(os.path.join(root, "idx"), num_train, num_test)
  config = data.DataConfig(data_dir=os.path.join(root, "tfds"), idx_dir=os.path.join(root, "idx"),
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
  from pcnas_tf import search_lib  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
  space_path = os.path.join(root, "tiny_space.json")
  with open(space_path, "w") as f:
    json.dump(tiny_space().to_json(), f)
  data_config = tiny_fashion(str(root), resolution=8, validation=128, deterministic=True)
  return search_lib.SearchConfig(
      space=space_path, pool_size=2, num_samples=3, warmup_epochs=1, interval_epochs=1,
      steps_per_epoch=2, batch_size=16, constraint="flops", budget="0.6", eval_batch_size=32,
      eval_batches=2, strategy="one_device", checkpoint_every=1, data=data_config)


# Searches in other processes: one process, or a local multi-worker cluster (cluster_test, bench) --------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_TIMEOUT_S = 420  # per run: a hung collective fails the caller instead of stalling it

# Runs one search task: argv = work_dir, config JSON, output path ("TASK" becomes the task index), number
# of logical CPUs. Every task writes its own result there (non-chief tasks keep nothing in work_dir).
SEARCH_TASK = '''
import json, os, sys
if int(sys.argv[4]) > 1:
  import tensorflow as tf
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[4]))
from pcnas_tf import cluster, data, errors, search_lib
fields = json.loads(sys.argv[2])
fields["data"] = data.DataConfig(**fields["data"])
task = cluster.task_from_env() if os.environ.get(cluster.ENV) else cluster.Task()
try:
  result = search_lib.run_search(search_lib.SearchConfig(**fields), sys.argv[1], progress=False,
                                 collective_timeout_s=60)
except errors.UserError as error:
  print(f"error: {error}", flush=True)
  sys.exit(2)
with open(sys.argv[3].replace("TASK", str(task.index)), "w") as f:
  json.dump({key: result[key] for key in ("final_pool", "paths_digest", "distribution", "log")}, f)
'''


def search_task_argv(config, work_dir, output, logical_cpus=1):
  """The command that runs `config` in `work_dir` and writes the task's result summary to `output`."""
  import sys  # pylint: disable=g-import-not-at-top
  return [sys.executable, "-c", SEARCH_TASK, str(work_dir), json.dumps(config.to_json()), str(output),
          str(logical_cpus)]


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
                       timeout=CLUSTER_TIMEOUT_S) -> ClusterRun:
  """Runs `config` (strategy multi_worker) as `num_workers` processes on 127.0.0.1.

  With `kill_after_checkpoint=n`, the last worker is killed once checkpoint n is in `work_dir`.
  """
  import time  # pylint: disable=g-import-not-at-top
  from pcnas_tf import cluster  # pylint: disable=g-import-not-at-top
  output = f"{work_dir}_TASK.json"
  paths = [output.replace("TASK", str(i)) for i in range(num_workers)]
  for path in paths:
    if os.path.exists(path):
      os.remove(path)
  start, killed_at = time.monotonic(), None
  with cluster.LocalCluster(search_task_argv(config, work_dir, output), num_workers, log_dir,
                            cwd=REPO) as workers:
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
  results = [read_json(p) if code == 0 and os.path.exists(p) else None for code, p in zip(codes, paths)]
  return ClusterRun(codes, results, workers.logs(), killed_at, time.monotonic() - start)
