"""The `tf.distribute` strategy of a run, and this process' place in its cluster."""

import tensorflow as tf

from pcnas_tf import errors
from pcnas_tf.distribute import cluster as cluster_lib

STRATEGIES = ("mirrored", "one_device", "multi_worker")


# How long a collective (a step's all-reduce) may wait for the slowest worker before it fails, so that no
# failure can hang the survivors forever. A dead or frozen worker is caught sooner by the strategy's
# coordination service, whose heartbeats stop (seconds, see README); this is the backstop. It must exceed
# how far the workers can drift apart between two collectives: each scores an interval's candidates on
# its own before the pool is shared, and machines of unequal speed finish that at different times.
COLLECTIVE_TIMEOUT_S = 3600


def make_strategy(name: str = "mirrored", collective_timeout_s: float = COLLECTIVE_TIMEOUT_S
                  ) -> tf.distribute.Strategy:
  """`mirrored` (every local device), `one_device` (first device) or `multi_worker` (TF_CONFIG)."""
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "one_device":
    device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(device)
  if name == "multi_worker":
    cluster_lib.task_from_env()  # a clear error for a missing or malformed TF_CONFIG
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout_s)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
  raise errors.UserError(f"Unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}.")


def task_of(strategy) -> cluster_lib.Task:
  """This process' place in the cluster: from TF_CONFIG under `multi_worker`, else the single chief."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return cluster_lib.task_from_env()
  return cluster_lib.Task()
