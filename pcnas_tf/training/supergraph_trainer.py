"""The custom distributed training loop for supergraphs.

The trainer owns the `tf.distribute` strategy, the traced train and evaluation steps, and nothing about
which architecture to train: callers pass a path (one choice index per mixop) per step. Each step's
path is a plain tensor argument, identical on every replica, so the steps are traced once for all paths.
"""

import keras
import tensorflow as tf

from pcnas_tf.training import path_optimizer as optimizer_lib
from pcnas_tf.nn import supergraph as supergraph_lib

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


def _correct(labels, logits):
  predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return tf.reduce_sum(tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)), tf.int32))
