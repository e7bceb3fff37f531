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


# Floats per row of a packed variable. Variables are [rows, ROW] and every candidate starts on a new
# row, so a candidate's part is read and written as whole rows: one memcpy per row. Read element by
# element (a flat variable), the selected weights took 2 ms of a 16 ms forward pass at width 0.35.
ROW = 128


class _Layout:
  """Where each candidate's variables lie in a packed [rows, ROW] variable.

  Candidate i owns rows offsets[i]:offsets[i+1]: its variables flattened and concatenated in its
  layer's order, zero-padded to a whole number of rows.
  """

  def __init__(self, groups):
    self.shapes = [[tuple(v.shape) for v in group] for group in groups]
    self.sizes = [[int(np.prod(shape)) for shape in shapes] for shapes in self.shapes]
    rows = [-(-sum(sizes) // ROW) for sizes in self.sizes]
    self.offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)

  @property
  def rows(self) -> int:
    return int(self.offsets[-1])

  def pack(self, groups_of_values) -> np.ndarray:
    """The [rows, ROW] float32 array holding every candidate's `values` (shaped as in the layout)."""
    packed = np.zeros((self.rows, ROW), np.float32)
    for index, values in enumerate(groups_of_values):
      flat = np.concatenate([np.ravel(v) for v in values]) if values else np.zeros(0)
      packed.reshape(-1)[self.offsets[index] * ROW:self.offsets[index] * ROW + flat.size] = flat
    return packed

  def unpack(self, part, index):
    """Candidate `index`'s tensors, out of `part`: its rows, as `read_slice` returns them."""
    sizes = self.sizes[index]
    if not sizes:
      return []
    padding = int(self.offsets[index + 1] - self.offsets[index]) * ROW - sum(sizes)
    pieces = tf.split(tf.reshape(part, [-1]), sizes + [padding])
    # 1-D pieces (BN's per-channel vectors) already have their shape: no Reshape node for them.
    return [piece if len(shape) == 1 else tf.reshape(piece, shape)
            for piece, shape in zip(pieces, self.shapes[index])]

  def repack(self, tensors, index):
    """Inverse of `unpack`: candidate `index`'s `tensors` as its rows."""
    rows = int(self.offsets[index + 1] - self.offsets[index])
    padding = rows * ROW - sum(self.sizes[index])
    flat = [tf.reshape(t, [-1]) for t in tensors] + [tf.zeros([padding])]
    return tf.reshape(tf.concat(flat, axis=0), [rows, ROW])

  def bounds(self, index):
    """(start, stop) rows of candidate `index` (an int or a scalar tensor)."""
    offsets = tf.constant(self.offsets)
    return offsets[index], offsets[index + 1]


def read_slice(variable, start, stop):
  """Rows `start:stop` of a packed variable, reading only those rows (dynamic bounds).

  Why not `variable[start:stop]`: that reads the whole variable first, and once a variable has had a
  slice assignment (`assign_slice`) TensorFlow puts it in copy-on-read mode, in which every plain read
  copies the whole buffer: every candidate's weights, each step (measured: 4 ms of a 100 ms train step
  at width 0.35). ResourceGather copies only the rows it reads. `handle` is this replica's copy under
  tf.distribute.
  """
  return tf.raw_ops.ResourceGather(resource=variable.handle, indices=tf.range(start, stop),
                                   dtype=tf.as_dtype(variable.dtype))


def assign_slice(variable, start, stop, value):
  """`variable[start:stop] = value` (rows) in place, on this replica's copy (dynamic bounds)."""
  # Keras and tf.Variable offer no dynamic-bounds slice assignment that reaches a replica's copy. A row
  # scatter, not ResourceStridedSliceAssign: measured here, 0.03 ms against 0.44 ms for 700 rows.
  tf.raw_ops.ResourceScatterUpdate(resource=variable.handle, indices=tf.range(start, stop),
                                   updates=value)


class MixOp(keras.layers.Layer):
  """One mixed operator: N candidate operators, of which `choice` runs, with packed weights.

  Attributes:
    candidates: the candidate operator layers (templates: their own variables are not used).
    packed_weights: every candidate's trainable weights, [rows, ROW]; candidate i owns rows
      `weight_offsets[i]:weight_offsets[i + 1]` (its weights flattened, then zero padding).
    packed_statistics: every candidate's BN moving statistics, likewise by `statistic_offsets`.
    decay_mask: 1.0 where `packed_weights` holds a kernel (L2-decayed), else 0.0 (padding too).
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
    for op in self.candidates:
      for layer in op._flatten_layers():  # pylint: disable=protected-access
        if isinstance(layer, ops.ConvBN):
          # Branches return the batch's statistics; `call` averages them into the moving ones for
          # every candidate at once (one update per mixop instead of ten nodes per BN per branch).
          layer.raw_statistics = True
    trainable = [op.trainable_variables for op in self.candidates]
    statistics = [op.non_trainable_variables for op in self.candidates]
    self._weights_layout, self._statistics_layout = _Layout(trainable), _Layout(statistics)
    self.weight_offsets = self._weights_layout.offsets
    self.statistic_offsets = self._statistics_layout.offsets
    self.decay_mask = self._weights_layout.pack(
        [[np.full(v.shape, float(is_decayed(v))) for v in group] for group in trainable])
    initial_weights = self._weights_layout.pack([[v.numpy() for v in g] for g in trainable])
    initial_statistics = self._statistics_layout.pack([[v.numpy() for v in g] for g in statistics])
    self.packed_weights = self.add_weight(
        shape=initial_weights.shape, initializer=lambda shape, dtype: initial_weights, name="weights")
    self.packed_statistics = self.add_weight(
        shape=initial_statistics.shape, initializer=lambda shape, dtype: initial_statistics,
        trainable=False, name="statistics")
    self.built = True

  def weight_bounds(self, choice):
    """(start, stop) of candidate `choice` (int or scalar tensor) in `packed_weights`."""
    return self._weights_layout.bounds(choice)

  def selected_weights(self, choice):
    """Candidate `choice`'s trainable weights, flat: the part of `packed_weights` it owns."""
    return read_slice(self.packed_weights, *self.weight_bounds(choice))

  def call(self, x, choice, training=False, batch_stats=False, weights=None):
    """Runs candidate `choice` on `x`; `weights`: its `selected_weights` (read here when None)."""
    if weights is None:
      weights = self.selected_weights(choice)
    start, stop = self._statistics_layout.bounds(choice)
    statistics = read_slice(self.packed_statistics, start, stop)
    update = bool(training) and not batch_stats
    branches = [functools.partial(self._branch, index, x, weights, statistics, training, batch_stats,
                                  update)
                for index in range(len(self.candidates))]
    outputs = branches[0]() if len(branches) == 1 else tf.switch_case(choice, branches)
    if not update:
      return outputs
    y, batch_statistics = outputs
    assign_slice(self.packed_statistics, start, stop,
                 ops.moving_average(statistics, batch_statistics))
    return y

  def _branch(self, index, x, weights, statistics, training, batch_stats, update):
    # Every branch takes the selected candidate's parts, read once outside the switch_case, so the
    # unselected branches hold no slicing of their own (each of their nodes is scheduled, dead, every
    # step) and the gradient is only as large as the selected candidate's weights.
    y, new_statistics = self.candidates[index].stateless_call(
        self._weights_layout.unpack(weights, index), self._statistics_layout.unpack(statistics, index),
        x, training=training, batch_stats=batch_stats)
    if not update:
      return y
    # stop_gradient on the branch's output, not earlier: the switch_case's gradient differentiates every
    # branch output, and would otherwise carry zeros back through the moving-average arithmetic.
    return y, tf.stop_gradient(self._statistics_layout.repack(new_statistics, index))

  def candidate_weights(self, choice):
    """Candidate `choice`'s (trainable, non-trainable) values as numpy arrays, in its layer's order."""
    def values(variable, layout):
      part = variable.numpy()[int(layout.offsets[choice]):int(layout.offsets[choice + 1])]
      return [np.asarray(t) for t in layout.unpack(part, choice)]
    return (values(self.packed_weights, self._weights_layout),
            values(self.packed_statistics, self._statistics_layout))


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

  def call(self, images, path, training=False, batch_stats=False, path_weights=None):
    """Logits of `path` on `images`.

    Args:
      images: a batch of images.
      path: int32 tensor of length L, the chosen operator of each mixop.
      training: training mode (BN batch statistics, moving averages updated).
      batch_stats: inference with BN statistics of this batch, moving averages untouched.
      path_weights: `path_weights(path)`, when the caller differentiates with respect to them.
    """
    x = self.features(images, path, training=training, batch_stats=batch_stats,
                      path_weights=path_weights)
    return self.head(x, training=training, batch_stats=batch_stats)

  def features(self, x, path, training=False, batch_stats=False, start=0, stop=None, images=None,
               path_weights=None):
    """Runs mixops `start..stop-1` on `x`.

    `x` are images, run through the stem first, when `images` is True (default: when `start` is 0).
    """
    if start == 0 if images is None else images:
      x = self._stem(x, training, batch_stats)
    stop = len(self.mixops) if stop is None else stop
    for index in range(start, stop):
      x = self.mixops[index](x, path[index], training=training, batch_stats=batch_stats,
                             weights=None if path_weights is None else path_weights[index])
    return x

  def path_weights(self, path):
    """The selected candidate's flat weights of each mixop (see `MixOp.selected_weights`).

    PathSGD's gradients are taken with respect to these, not the packed variables: a gradient of the
    size of one path's weights instead of every candidate's, and all-reduced at that size.
    """
    return [mixop.selected_weights(path[index]) for index, mixop in enumerate(self.mixops)]

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
