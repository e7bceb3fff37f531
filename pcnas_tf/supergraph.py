"""The supergraph: L mixed operators whose choice comes in as a path tensor (paper section 3.2).

`Supergraph(space, input_shape, num_classes)(images, path, training)` runs only the selected operator of
each mixop: each mixop is a `tf.switch_case` on its entry of `path`, so one traced graph serves every
architecture and a step costs what the chosen architecture costs.

Packed storage. Each mixop keeps the weights of all its candidates in ONE flat trainable variable and
their BN moving statistics in ONE flat non-trainable variable; a candidate's branch slices its own part
out and runs the candidate's ordinary Keras layer on those slices through `Layer.stateless_call`. Why
not one variable per weight, as Keras layers have: a traced step takes every captured variable handle
as an input on every call, and the switch_case branches of all candidates add per-handle switch nodes.
Measured on this CPU (small space, width 0.35, 64x64, batch 32, 1 thread): with per-weight variables
(2,567 handles) the forward pass took 1.7-2.0x the stand-alone model's time; packed (two per mixop)
1.03-1.09x. What remains of the overhead is the lowered switch_case: the unselected candidates' nodes
are still scheduled, as dead nodes, every step. The candidate layers are templates: built once for their shapes and initial values, then
kept out of the supergraph's variables (`candidates`), so checkpoints hold exactly the packed state.
Their own variables stay allocated, unused: the weights are held twice in memory, a cost we accept for
running the same operator code as the stand-alone models.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from pcnas_tf import errors
from pcnas_tf import ops

# L2 regularisation (paper 4.1) covers convolution and dense kernels, not BN scales or biases.
DECAYED_WEIGHTS = ("kernel", "depthwise_kernel")


def is_decayed(variable) -> bool:
  """Whether weight decay applies to `variable` (a kernel, by its name)."""
  return variable.name.split("/")[-1].split(":")[0] in DECAYED_WEIGHTS


class _Templates:
  """Holds the candidate layers without Keras or tf.Module tracking their (stale) variables."""

  def __init__(self, layers):
    self.layers = list(layers)


class _Layout:
  """Where each candidate's variables lie in a flat vector: offsets[i]:offsets[i+1], then shapes."""

  def __init__(self, groups):
    self.shapes = [[tuple(v.shape) for v in group] for group in groups]
    sizes = [sum(int(np.prod(shape)) for shape in shapes) for shapes in self.shapes]
    self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

  @property
  def size(self) -> int:
    return int(self.offsets[-1])

  def unpack(self, flat, index):
    """Candidate `index`'s tensors, sliced out of `flat` and reshaped."""
    shapes = self.shapes[index]
    if not shapes:
      return []
    part = flat[int(self.offsets[index]):int(self.offsets[index + 1])]
    sizes = [int(np.prod(shape)) for shape in shapes]
    pieces = tf.split(part, sizes) if len(sizes) > 1 else [part]
    return [tf.reshape(piece, shape) for piece, shape in zip(pieces, shapes)]


def _flat(values):
  return np.concatenate([np.ravel(v) for v in values] or [np.zeros(0)]).astype(np.float32)


class MixOp(keras.layers.Layer):
  """One mixed operator: N candidate operators, of which `choice` runs, with packed weights.

  Attributes:
    candidates: the candidate operator layers (templates: their own variables are not used).
    packed_weights: every candidate's trainable weights, flat; candidate i owns
      `weight_offsets[i]:weight_offsets[i + 1]`.
    packed_statistics: every candidate's BN moving statistics, flat, likewise by `statistic_offsets`.
    decay_mask: 1.0 where `packed_weights` holds a kernel (L2-decayed), else 0.0.
  """

  def __init__(self, candidates, **kwargs):
    super().__init__(**kwargs)
    self._templates = _Templates(candidates)
    self.packed_weights = self.packed_statistics = None

  @property
  def candidates(self):
    return self._templates.layers

  def pack(self):
    """Creates the packed variables from the built candidates' current values."""
    trainable = [op.trainable_variables for op in self.candidates]
    statistics = [op.non_trainable_variables for op in self.candidates]
    self._weights_layout, self._statistics_layout = _Layout(trainable), _Layout(statistics)
    self.weight_offsets = self._weights_layout.offsets
    self.statistic_offsets = self._statistics_layout.offsets
    self.decay_mask = _flat([np.full(v.shape, float(is_decayed(v))) for g in trainable for v in g])
    initial_weights = _flat([v.numpy() for g in trainable for v in g])
    initial_statistics = _flat([v.numpy() for g in statistics for v in g])
    self.packed_weights = self.add_weight(
        shape=initial_weights.shape, initializer=lambda shape, dtype: initial_weights, name="weights")
    self.packed_statistics = self.add_weight(
        shape=initial_statistics.shape, initializer=lambda shape, dtype: initial_statistics,
        trainable=False, name="statistics")
    self.built = True

  def call(self, x, choice, training=False, batch_stats=False):
    weights = tf.convert_to_tensor(self.packed_weights)
    statistics = tf.convert_to_tensor(self.packed_statistics)
    update = bool(training) and not batch_stats
    branches = [functools.partial(self._branch, index, x, weights, statistics, training, batch_stats,
                                  update)
                for index in range(len(self.candidates))]
    outputs = branches[0]() if len(branches) == 1 else tf.switch_case(choice, branches)
    if not update:
      return outputs
    y, new_statistics = outputs
    self.packed_statistics.assign(new_statistics)
    return y

  def _branch(self, index, x, weights, statistics, training, batch_stats, update):
    y, new_statistics = self.candidates[index].stateless_call(
        self._weights_layout.unpack(weights, index), self._statistics_layout.unpack(statistics, index),
        x, training=training, batch_stats=batch_stats)
    if not update:
      return y
    # The branch returns the whole statistics vector with only its own slice replaced: every branch
    # of a switch_case must return the same shapes, and the vector is small (per-channel values).
    start, stop = (int(s) for s in self.statistic_offsets[index:index + 2])
    return y, tf.concat([statistics[:start]] + [tf.reshape(v, [-1]) for v in new_statistics]
                        + [statistics[stop:]], axis=0)

  def candidate_weights(self, choice):
    """Candidate `choice`'s (trainable, non-trainable) values as numpy arrays, in its layer's order."""
    return ([t.numpy() for t in self._weights_layout.unpack(self.packed_weights.numpy(), choice)],
            [t.numpy() for t in self._statistics_layout.unpack(self.packed_statistics.numpy(), choice)])


class Supergraph(keras.Model):
  """The weight-sharing network of a search space.

  Args:
    space: the `SearchSpace`.
    input_shape: (height, width, channels) of the images.
    num_classes: classifier outputs.
    se: add squeeze-and-excitation to every operator.
  """

  def __init__(self, space, input_shape, num_classes, se=False, **kwargs):
    super().__init__(**kwargs)
    self.space = space
    self.image_shape = tuple(input_shape)
    self.num_classes = num_classes
    self.se = se
    self.stem = ops.stem_layer(space)
    self.first_op = ops.first_op_layer(space, se)
    self.mixops = [
        MixOp([ops.candidate_layer(space, index, op, se) for op in layer.choices],
              name=f"mixop_{index:02d}")
        for index, layer in enumerate(space.layers)]
    self.head = ops.head_layer(space, num_classes)
    self._build_every_candidate()

  def _build_every_candidate(self):
    # Variables cannot be created inside the branches of a traced switch_case, so every candidate is
    # built here, eagerly, on one zero image, and then packed.
    x = self._stem(tf.zeros((1,) + self.image_shape), training=False)
    for mixop in self.mixops:
      outputs = [op(x, training=False) for op in mixop.candidates]
      mixop.pack()
      x = outputs[0]
    self.head(x, training=False)
    self.built = True

  def _stem(self, images, training, batch_stats=False):
    x = self.stem(images, training=training, batch_stats=batch_stats)
    if self.first_op is not None:
      x = self.first_op(x, training=training, batch_stats=batch_stats)
    return x

  def call(self, images, path, training=False, batch_stats=False):
    """Logits of `path` on `images`.

    Args:
      images: a batch of images.
      path: int32 tensor of length L, the chosen operator of each mixop.
      training: training mode (BN batch statistics, moving averages updated).
      batch_stats: inference with BN statistics of this batch, moving averages untouched.
    """
    x = self.features(images, path, training=training, batch_stats=batch_stats)
    return self.head(x, training=training, batch_stats=batch_stats)

  def features(self, x, path, training=False, batch_stats=False, start=0, stop=None, images=None):
    """Runs mixops `start..stop-1` on `x`.

    `x` are images, run through the stem first, when `images` is True (default: when `start` is 0).
    """
    if start == 0 if images is None else images:
      x = self._stem(x, training, batch_stats)
    stop = len(self.mixops) if stop is None else stop
    for index in range(start, stop):
      x = self.mixops[index](x, path[index], training=training, batch_stats=batch_stats)
    return x

  def shared_layers(self):
    """The layers every path uses: stem, fixed first operator, head."""
    return [layer for layer in (self.stem, self.first_op, self.head) if layer is not None]

  def candidate(self, index, choice):
    """The operator layer (a template, see `MixOp`) for `choice` at mixop `index`."""
    return self.mixops[index].candidates[choice]

  def assign_arrays(self, arrays, source: str) -> None:
    """Assigns checkpoint `arrays` (as `variables` lists them; extra trailing arrays are ignored).

    Raises:
      errors.UserError: if the arrays were written for another space, width or storage format.
    """
    variables = self.variables
    if len(arrays) < len(variables) or any(
        tuple(v.shape) != np.shape(a) for v, a in zip(variables, arrays)):
      raise errors.UserError(
          f"Checkpoint in {source!r} does not fit this supergraph ({len(variables)} variables); it was "
          f"written for another space, width or image size, or by an older pcnas_tf.")
    for variable, value in zip(variables, arrays):
      variable.assign(value)

  def get_config(self):
    return {"space": self.space.to_json(), "input_shape": self.image_shape,
            "num_classes": self.num_classes, "se": self.se}
