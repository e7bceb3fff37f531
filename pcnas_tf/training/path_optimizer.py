"""Nesterov SGD that updates only the selected path of a supergraph.

Why not a stock Keras optimizer: the path is chosen inside the traced step, so the weights to update
are only known at run time. Feeding zero gradients for the unselected operators into `keras.optimizers.SGD`
is wrong (momentum keeps moving their weights and weight decay shrinks them) and slow (measured here at
1.44x the stand-alone step time). `PathSGD` keeps Keras' SGD update rule and its learning-rate schedules,
but applies it, in each mixop's packed weights (see `mixop.MixOp`), only to the rows the path's
operator owns: gradients come for those rows alone, and those rows of the weights and momentum are read
(row gather) and written in place (row scatter), so unselected operators, their momentum slots and their
decay are left bit-identical, with no branching.
"""

import keras
import numpy as np
import tensorflow as tf

from pcnas_tf.nn import mixop as mixop_lib


class PathSGD:
  """SGD with (Nesterov) momentum and L2 weight decay, restricted to one path per step.

  Create it inside the distribution strategy's scope, like the supergraph's variables. `apply` runs in
  the replica context on all-reduced gradients: each replica updates its own copy identically.

  Args:
    supergraph: the `Supergraph` whose variables it updates.
    learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
    momentum: momentum coefficient (paper: 0.9).
    nesterov: use Nesterov momentum (paper: True).
    weight_decay: L2 coefficient added to the gradient of kernels (paper: 1e-4).
  """

  def __init__(self, supergraph, learning_rate, momentum=0.9, nesterov=True, weight_decay=1e-4):
    self.learning_rate = learning_rate
    self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
    self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
    self.shared_variables = [v for layer in supergraph.shared_layers() for v in layer.trainable_variables]
    self.mixops = list(supergraph.mixops)
    self.slots = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="momentum")
                  for v in self.variables]
    # Which packed weights are kernels, as variables rather than graph constants: a constant the size of
    # every candidate's weights would be copied into the traced graph. One bit per weight, 32 to an
    # int32 (`pack_mask`): a bool per weight was 0.16 GiB for a large-space supergraph at width 1.0,
    # int8 cannot be broadcast by multi-worker collectives, and float16 made oneDNN warn on every CPU
    # without AVX-512. They are derived from the layout, so checkpoints do not hold them.
    self.decay_masks = [tf.Variable(pack_mask(mixop.decay_mask), trainable=False, name="decay_mask")
                        for mixop in self.mixops]

  @property
  def variables(self):
    """Every variable it updates (one momentum slot each): shared, then each mixop's packed weights."""
    return self.shared_variables + [mixop.packed_weights for mixop in self.mixops]

  def current_learning_rate(self):
    if isinstance(self.learning_rate, keras.optimizers.schedules.LearningRateSchedule):
      return tf.cast(self.learning_rate(self.iterations), tf.float32)
    return tf.constant(self.learning_rate, tf.float32)

  def apply(self, gradients, rows, path_weights):
    """Applies `gradients` to the shared layers and to the path's rows of each mixop.

    Args:
      gradients: one per shared variable, then one per mixop with respect to its `path_weights`
        entry, or None.
      rows: `Supergraph.path_rows(path)`, for each mixop the rows the path's candidate owns.
      path_weights: `Supergraph.path_weights(rows)`, the values the gradients were computed at.
    """
    learning_rate = self.current_learning_rate()
    shared = len(self.shared_variables)
    for variable, gradient, slot in zip(self.shared_variables, gradients, self.slots):
      decay = 1.0 if mixop_lib.is_decayed(variable) else 0.0
      new_variable, new_slot = self._rule(variable, gradient, slot, decay, learning_rate)
      slot.assign(new_slot)
      variable.assign(new_variable)
    for index, mixop in enumerate(self.mixops):
      gradient, slot = gradients[shared + index], self.slots[shared + index]
      if mixop.weight_offsets[-1] == 0 or gradient is None:
        continue
      mask = unpack_mask(mixop_lib.read_rows(self.decay_masks[index], rows[index]))
      new_variable, new_slot = self._rule(path_weights[index], gradient,
                                          mixop_lib.read_rows(slot, rows[index]), mask, learning_rate)
      mixop_lib.write_rows(slot, rows[index], new_slot)
      mixop_lib.write_rows(mixop.packed_weights, rows[index], new_variable)
    self.iterations.assign_add(1)

  def _rule(self, variable, gradient, slot, decay, learning_rate):
    """Keras' SGD rule with L2 decay where `decay` is 1: returns (new variable, new momentum)."""
    variable = tf.convert_to_tensor(variable)
    if self.weight_decay:
      gradient = gradient + self.weight_decay * decay * variable
    new_slot = self.momentum * tf.convert_to_tensor(slot) - learning_rate * gradient
    step = self.momentum * new_slot - learning_rate * gradient if self.nesterov else new_slot
    return variable + step, new_slot


def pack_mask(mask) -> np.ndarray:
  """A [rows, ROW] bool mask as [rows, ROW / 32] int32: bit k of word w holds element 32 w + k (ROW is
  a multiple of 32)."""
  bits = np.packbits(np.asarray(mask, bool), axis=-1, bitorder="little")  # [rows, ROW / 8] uint8
  return np.ascontiguousarray(bits).view("<i4").astype(np.int32)


def unpack_mask(words):
  """`pack_mask`'s words (rows of them, a tensor) back to the [rows, ROW] mask, as float32 0 and 1."""
  bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(words[..., None], tf.range(32, dtype=words.dtype)), 1)
  return tf.cast(tf.reshape(bits, [-1, words.shape[-1] * 32]), tf.float32)
