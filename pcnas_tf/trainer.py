"""The custom distributed training loop for supergraphs.

The trainer owns the `tf.distribute` strategy, the traced train and evaluation steps, and nothing about
which architecture to train: callers pass a path (one choice index per mixop) per step. Each step's
path is a plain tensor argument, identical on every replica, so the steps are traced once for all paths.
"""

import keras
import tensorflow as tf

from pcnas_tf import cluster as cluster_lib
from pcnas_tf import errors
from pcnas_tf import optimizer as optimizer_lib
from pcnas_tf import supergraph as supergraph_lib

STRATEGIES = ("mirrored", "one_device", "multi_worker")


class DivergedError(errors.UserError):
  """The training loss became NaN or Inf."""


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


class SupergraphTrainer:
  """Builds a supergraph and its `PathSGD` under a strategy, and runs single-path steps.

  Args:
    space: the `SearchSpace`.
    input_shape: (height, width, channels) of the images.
    num_classes: classifier outputs.
    strategy: a `tf.distribute.Strategy`.
    global_batch_size: images per step over all replicas (the loss is averaged over it).
    learning_rate: float or Keras schedule; momentum, nesterov, weight_decay: see `PathSGD`.
  """

  def __init__(self, space, input_shape, num_classes, strategy, global_batch_size,
               learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4):
    self.space, self.strategy, self.global_batch_size = space, strategy, global_batch_size
    self.trace_count = 0
    with strategy.scope():
      self.supergraph = supergraph_lib.Supergraph(space, input_shape, num_classes)
      self.optimizer = optimizer_lib.PathSGD(self.supergraph, learning_rate, momentum, nesterov,
                                             weight_decay)
    self._train_step = tf.function(self._distributed_train_step)
    self._eval_step = tf.function(self._eval_correct)

  def _replica_train_step(self, images, labels, path):
    rows = self.supergraph.path_rows(path)
    with tf.GradientTape() as tape:
      path_weights = self.supergraph.path_weights(rows)
      tape.watch(path_weights)
      logits = self.supergraph(images, path, training=True, path_weights=path_weights)
      per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
      loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
    gradients = tape.gradient(loss, self.optimizer.shared_variables + path_weights,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
    gradients = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, gradients)
    self.optimizer.apply(gradients, rows, path_weights)
    return loss, _correct(labels, logits)

  def _distributed_train_step(self, iterator, path):
    self.trace_count += 1  # Python side effect: runs once per trace.
    images, labels = next(iterator)
    loss, correct = self.strategy.run(self._replica_train_step, args=(images, labels, path))
    total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
    return total, self.strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None)

  def train_step(self, iterator, path):
    """One step on the next global batch of `iterator` along `path`; returns (loss, correct count)."""
    return self._train_step(iterator, tf.convert_to_tensor(path, tf.int32))

  def _eval_correct(self, images, labels, path):
    self.trace_count += 1
    return _correct(labels, self.supergraph(images, path, training=False))

  def evaluate(self, images, labels, path):
    """Correct predictions of `path` on one (non-distributed) batch, in inference mode."""
    return self._eval_step(images, labels, tf.convert_to_tensor(path, tf.int32))


def write_scalars(writer, step: int, scalars: dict) -> None:
  """Writes `{tag: value}` to a TensorBoard summary writer at `step`."""
  with writer.as_default(step=step):
    for tag, value in scalars.items():
      tf.summary.scalar(tag, value)


def _correct(labels, logits):
  predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return tf.reduce_sum(tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)), tf.int32))
