"""Who does what in a multi-worker run: TF_CONFIG, the chief, where each task writes, local clusters.

With `--strategy=multi_worker` every machine runs the same command; `MultiWorkerMirroredStrategy` learns
the cluster and this machine's place in it from the `TF_CONFIG` environment variable, the standard way:

  {"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}

Every task trains, draws the same paths (one seeded generator, checked across tasks with `gather`) and
runs the same saving code, because reading distributed variables may take part in collectives. As
TensorFlow's multi-worker tutorial recommends, only the chief (the `chief` task, or worker 0 when there
is none) keeps what it writes: the others write to a temporary directory of their own, deleted at the
end (`output_dir`). All tasks read checkpoints from the shared work directory when they resume.

`LocalCluster` starts N tasks as processes on 127.0.0.1 with free ports, for the tests and the benchmark;
on real machines one sets TF_CONFIG per machine instead (README, "From one GPU to many machines").
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from pcnas_tf import files

from pcnas_tf.training import workdir
from pcnas_tf import errors

ENV = "TF_CONFIG"
_ROLES = ("chief", "worker")
_EXAMPLE = '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'


class ClusterError(errors.UserError):
  """TF_CONFIG is missing or does not describe a chief/worker cluster, or the tasks disagree."""


@dataclasses.dataclass(frozen=True)
class Task:
  """This process' place in the cluster; the default is a single process, which is the chief."""
  type: str = "worker"
  index: int = 0
  num_tasks: int = 1
  has_chief_task: bool = False

  @property
  def is_chief(self) -> bool:
    return self.type == "chief" or (not self.has_chief_task and self.type == "worker" and self.index == 0)

  @property
  def name(self) -> str:
    return f"{self.type}-{self.index}"

  @property
  def rank(self) -> int:
    """0 .. num_tasks - 1, the chief's 0: this task's place when the tasks share work."""
    if self.type == "chief":
      return 0
    return self.index + (1 if self.has_chief_task else 0)


def task_from_env(environ=None) -> Task:
  """This process' `Task` from TF_CONFIG; raises `ClusterError` naming what is wrong with it."""
  environ = os.environ if environ is None else environ
  raw = environ.get(ENV, "").strip()
  if not raw:
    raise ClusterError(f"--strategy=multi_worker needs the {ENV} environment variable on every machine, "
                       f"e.g. {ENV}='{_EXAMPLE}'.")
  try:
    config = json.loads(raw)
  except json.JSONDecodeError as error:
    raise ClusterError(f"{ENV} is not valid JSON ({error.msg} at character {error.pos}); expected e.g. "
                       f"'{_EXAMPLE}'.") from error
  cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
  if not isinstance(cluster, dict) or not isinstance(task, dict):
    raise ClusterError(f"{ENV} needs a \"cluster\" and a \"task\" object; expected e.g. '{_EXAMPLE}'.")
  unknown = sorted(set(cluster) - set(_ROLES))
  if unknown or "worker" not in cluster and "chief" not in cluster:
    raise ClusterError(f"{ENV} cluster roles {sorted(cluster)} are not supported; allowed: "
                       f"{', '.join(_ROLES)} (at most one chief).")
  for role, addresses in cluster.items():
    if (not isinstance(addresses, list) or not addresses
        or not all(isinstance(a, str) and ":" in a for a in addresses)):
      raise ClusterError(f"{ENV} cluster role {role!r} is {addresses!r}; it must be a non-empty list of "
                         f"\"host:port\" addresses.")
  if len(cluster.get("chief", [])) > 1:
    raise ClusterError(f"{ENV} names {len(cluster['chief'])} chiefs; allowed: at most one.")
  role, index = task.get("type"), task.get("index", 0)
  if role not in cluster:
    raise ClusterError(f"{ENV} task type {role!r} is not a role of the cluster; allowed: "
                       f"{', '.join(sorted(cluster))}.")
  if not isinstance(index, int) or not 0 <= index < len(cluster[role]):
    raise ClusterError(f"{ENV} task index {index!r} is out of range; allowed for {role!r}: "
                       f"0..{len(cluster[role]) - 1}.")
  return Task(role, index, sum(len(a) for a in cluster.values()), "chief" in cluster)


def output_dir(work_dir: str, task: Task) -> str:
  """Where `task` writes: the work directory for the chief, an emptied temporary directory for the others.

  The temporary directory is on local disk (the tutorial puts it beside the chief's; nothing reads it),
  named after the work directory and the task, so a task restarted after a kill, which had no chance
  to delete it, empties its predecessor's instead of leaving checkpoints behind. The caller deletes it
  at the end with `remove_output_dir`.
  """
  if task.is_chief:
    return work_dir
  key = hashlib.sha256(files.absolute(work_dir).encode()).hexdigest()[:12]
  directory = os.path.join(tempfile.gettempdir(), f"pcnas_{task.name}_{key}")
  shutil.rmtree(directory, ignore_errors=True)
  os.makedirs(directory)
  return directory


def remove_output_dir(directory: str, work_dir: str) -> None:
  """Deletes a non-chief task's temporary output directory (never the work directory)."""
  if files.absolute(directory) != files.absolute(work_dir):
    shutil.rmtree(directory, ignore_errors=True)


class WorkerLostError(ClusterError):
  """Another task of the cluster stopped or could not be reached in time."""


@contextlib.contextmanager
def lost_workers_reported(work_dir: str, task: Task):
  """Turns the collectives' failure when a task dies into one sentence saying how to resume.

  When a task dies, the others fail at their next collective: at once when its connection resets, or
  after the collective timeout (`strategy.make_strategy`). MultiWorkerMirroredStrategy cannot continue
  with fewer tasks, so the whole cluster stops and is started again; it resumes from the newest
  checkpoint in the shared work directory.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    yield
  except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
          tf.errors.AbortedError) as error:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if "aborted by" in line or "timed out" in line.lower()]
    first_line = (telling or lines or [""])[0]
    raise WorkerLostError(
        f"{task.name} lost contact with the cluster ({type(error).__name__}: {first_line[:200]}); start "
        f"every task again with the same command and TF_CONFIG: they resume from the newest checkpoint "
        f"in {work_dir!r}.") from error


def run_job(work_dir: str, multi_worker: bool, check, make_job, prepare):
  """Runs a job (a search or a training) in `work_dir` as this process' task; returns its result.

  One process, or the chief of a cluster: `check()` the work directory without writing to it, make the
  job with `make_job(True)` (which loads the data and makes every check that needs it), and only
  then create and lock `work_dir`, `prepare()` it (write its config) and run the job: a rejected run
  leaves nothing behind. Any other task of a cluster runs `make_job(False)`, which writes only to its
  own output directory (`output_dir`), removed at the end. In a cluster a lost peer becomes one clear
  error (`lost_workers_reported`).
  """
  if not multi_worker:
    return _run_chief(work_dir, check, make_job, prepare)
  task = task_from_env()
  with lost_workers_reported(work_dir, task):
    if not task.is_chief:
      job = make_job(False)
      try:
        return job.run()
      finally:
        remove_output_dir(job.out_dir, work_dir)
    return _run_chief(work_dir, check, make_job, prepare)


def _run_chief(work_dir: str, check, make_job, prepare):
  check()
  job = make_job(True)
  files.make_dir(work_dir)
  with workdir.WorkDirLock(work_dir):
    prepare()
    return job.run()


def gather(strategy, values) -> np.ndarray:
  """Every replica's `values` (a 1-D numeric array), as rows indexed by replica id.

  One all-reduce (a sum where each replica fills only its own row), which is also a barrier. Every task
  must call it at the same point. The values travel as float64: integers are exact below 2**53.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (keeps TF_CONFIG parsing light)
  values = tf.constant(np.asarray(values, np.float64).reshape(-1))
  key = (id(strategy), int(values.shape[0]))
  if key not in _GATHERS:  # one traced function per strategy and length: a trace costs more than the call
    replicas = strategy.num_replicas_in_sync

    @tf.function
    def replica_fn(values):
      context = tf.distribute.get_replica_context()
      rows = tf.one_hot(context.replica_id_in_sync_group, replicas, dtype=tf.float64)
      return context.all_reduce(tf.distribute.ReduceOp.SUM, rows[:, None] * values[None, :])

    _GATHERS[key] = (strategy, replica_fn)  # the strategy is kept so that its id is not reused
  result = strategy.run(_GATHERS[key][1], args=(values,))
  return strategy.experimental_local_results(result)[0].numpy()


_GATHERS = {}


def digest(value) -> int:
  """A 52-bit fingerprint of a JSON-able value, small enough for `gather` to carry exactly."""
  text = json.dumps(value, sort_keys=True, default=str).encode()
  return int.from_bytes(hashlib.sha256(text).digest()[:7], "big") >> 4
