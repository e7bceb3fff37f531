"""One mixed operator of the supergraph: N candidate operators, packed storage, one branch per structure.

Packed storage. A mixop keeps the weights of all its candidates in ONE trainable variable and their BN
moving statistics in ONE non-trainable variable, each [rows, ROW]: candidate i owns rows
`offsets[i]:offsets[i + 1]` (its layer's variables flattened in order, then zero padding). Only the
selected candidate's rows are read (a row gather) and written (a row scatter) in a step. Why not one
variable per weight, as Keras layers have: a traced step takes every captured variable handle as an
input on every call; measured on this CPU (small space, width 0.35, 64x64, batch 32, 1 thread), 2,567
handles made the forward pass 1.7-2.0x the stand-alone model's time.

One branch per structure, not per candidate. The choice is a `tf.switch_case`, which TensorFlow lowers
so that every branch's nodes are scheduled each step, the unselected ones as dead nodes, and whose
gradient passes each branch's intermediates through optionals. With one branch per candidate that was
the whole remaining overhead: 10% of a train step and 11% of a forward pass at width 0.35 (the same
step with the branch chosen in Python ran as fast as the stand-alone model). Candidates that differ
only in kernel size and expansion (MBConv_3_5 and MBConv_6_7, say) run the same sequence of ops with
other weight shapes, so they share one branch that reshapes the selected candidate's rows with
shapes looked up by the choice: the small space's 10 candidates need 3 branches (Identity, MBConv
without and with the expansion conv), the large space's 20 need 6.

The branch code is `run_structure` below, written with TensorFlow ops because Keras layers have static
weight shapes; `ops.Operator` stays the definition, and `supergraph_test` checks that every candidate
of a mixop computes what its `ops.Operator` computes. The candidate layers are templates, built once
for their shapes and initial values, kept out of the supergraph's variables and dropped once packed:
the weights are held once, in the packed variables, and checkpoints hold exactly that state.
"""

import functools
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from pcnas_tf.nn import ops

# L2 regularisation (paper 4.1) covers convolution and dense kernels, not BN scales or biases.
DECAYED_WEIGHTS = ("kernel", "depthwise_kernel")

# Floats per row of a packed variable. Every candidate starts on a new row, so its part is read and
# written as whole rows: one memcpy per row. Read element by element (a flat variable), the selected
# weights took 2 ms of a 16 ms forward pass at width 0.35.
ROW = 128


def is_decayed(variable) -> bool:
  """Whether weight decay applies to `variable` (a kernel, by its name)."""
  return variable.name.split("/")[-1].split(":")[0] in DECAYED_WEIGHTS


def read_rows(variable, rows):
  """`variable[rows]` of a packed variable, reading only those rows.

  Why not a slice of the variable: that reads the whole variable first, and once a variable has had a
  row scatter (`write_rows`) TensorFlow keeps it in copy-on-read mode, in which every plain read
  copies the whole buffer: every candidate's weights, each step (measured: 4 ms of a 100 ms train step
  at width 0.35). `handle` is this replica's copy under tf.distribute.
  """
  return tf.raw_ops.ResourceGather(resource=variable.handle, indices=rows,
                                   dtype=tf.as_dtype(variable.dtype))


def write_rows(variable, rows, value):
  """`variable[rows] = value` in place, on this replica's copy."""
  # Keras and tf.Variable offer no run-time-bounds slice assignment that reaches a replica's copy. A
  # row scatter, not ResourceStridedSliceAssign: measured here, 0.03 ms against 0.44 ms for 700 rows.
  tf.raw_ops.ResourceScatterUpdate(resource=variable.handle, indices=rows, updates=value)


class _Templates:
  """Holds the candidate layers until packed, without Keras or tf.Module tracking their variables."""

  def __init__(self, layers):
    self.layers = list(layers)


class Layout:
  """Where each candidate's variables lie in a packed [rows, ROW] variable (see the module docstring).

  Args:
    groups: for each candidate, the list of its variables (or arrays), in its layer's order.
  """

  def __init__(self, groups):
    self.shapes = [[tuple(v.shape) for v in group] for group in groups]
    self.sizes = [[int(np.prod(shape)) for shape in shapes] for shapes in self.shapes]
    rows = [-(-sum(sizes) // ROW) for sizes in self.sizes]
    self.offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)

  @property
  def rows(self) -> int:
    return int(self.offsets[-1])

  def padding(self, index) -> int:
    """Zeros after candidate `index`'s values in its last row."""
    return int(self.offsets[index + 1] - self.offsets[index]) * ROW - sum(self.sizes[index])

  def pack(self, groups_of_values) -> np.ndarray:
    """The [rows, ROW] float32 array holding every candidate's values (shaped as in the layout)."""
    packed = np.zeros((self.rows, ROW), np.float32)
    for index, values in enumerate(groups_of_values):
      flat = np.concatenate([np.ravel(v) for v in values]) if values else np.zeros(0)
      packed.reshape(-1)[self.offsets[index] * ROW:self.offsets[index] * ROW + flat.size] = flat
    return packed

  def unpack(self, part, index):
    """Candidate `index`'s arrays, out of `part`: its rows (numpy)."""
    flat, values, start = np.reshape(part, [-1]), [], 0
    for size, shape in zip(self.sizes[index], self.shapes[index]):
      values.append(flat[start:start + size].reshape(shape))
      start += size
    return values


class _Shapes:
  """Unpacks any one of several candidates' rows whose tensors differ in shape but not in number or
  rank: sizes and shapes are looked up by the choice at run time; dimensions that all share stay
  static."""

  def __init__(self, layout, members, num_candidates):
    self.members = list(members)
    first = layout.shapes[members[0]]
    self.count = len(first)
    sizes = np.zeros((num_candidates, self.count + 1), np.int32)
    self.shape_tables = [np.zeros((num_candidates, len(shape)), np.int32) for shape in first]
    for member in members:
      sizes[member] = layout.sizes[member] + [layout.padding(member)]
      for table, shape in zip(self.shape_tables, layout.shapes[member]):
        table[member] = shape
    self.sizes = sizes
    self.static = [[int(d) if len(set(table[members, axis])) == 1 else None for axis, d in
                    enumerate(table[members[0]])] for table in self.shape_tables]

  def unpack(self, part, choice):
    if not self.count:
      return []
    # Run-time lookups only for what differs between the members (each lookup is a graph node).
    sizes = self.sizes[self.members]
    same_sizes = (sizes == sizes[0]).all()
    pieces = tf.split(tf.reshape(part, [-1]),
                      list(sizes[0]) if same_sizes else tf.gather(tf.constant(self.sizes), choice),
                      num=self.count + 1)
    tensors = []
    for piece, table, static in zip(pieces, self.shape_tables, self.static):
      if len(static) > 1:
        piece = tf.reshape(piece, static if None not in static else
                           tf.gather(tf.constant(table), choice))
      piece.set_shape(static)
      tensors.append(piece)
    return tensors

  def repack(self, tensors, choice):
    """Inverse of `unpack`: the tensors as the candidate's rows."""
    flat = tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0) if tensors else tf.zeros([0])
    padding = self.sizes[self.members, -1]
    flat = tf.pad(flat, [[0, int(padding[0]) if (padding == padding[0]).all() else
                          tf.gather(tf.constant(self.sizes[:, -1]), choice)]])
    return tf.reshape(flat, [-1, ROW])


class Structure(NamedTuple):
  """What an operator computes, but for its weights' shapes: operators alike share a branch.

  convs: for each ConvBN, (depthwise, strides, activation); residual: x + y at the end;
  squeeze_excite: the SE block's activation, or None.
  """
  convs: tuple
  residual: bool
  squeeze_excite: object


def structure_of(op: ops.Operator) -> Structure:
  """`op`'s structure, after checking that its variables come in the order `run_structure` reads."""
  expected = [v for conv in op.convs for v in (conv.conv.kernel, conv.bn.gamma, conv.bn.beta)]
  se = op.squeeze_excite
  if se is not None:
    expected += [se.reduce.kernel, se.reduce.bias, se.expand.kernel, se.expand.bias]
  statistics = [v for conv in op.convs for v in (conv.bn.moving_mean, conv.bn.moving_variance)]
  if ([id(v) for v in expected] != [id(v) for v in op.trainable_variables]
      or [id(v) for v in statistics] != [id(v) for v in op.non_trainable_variables]):
    raise AssertionError(f"{op.name}: variables are not in the order run_structure reads them.")
  return Structure(
      convs=tuple((conv.depthwise, tuple(conv.conv.strides), conv.activation) for conv in op.convs),
      residual=op.residual, squeeze_excite=None if se is None else se.activation)


def run_structure(structure, weights, statistics, x, training, batch_stats):
  """What `ops.Operator` computes, from its variables' values given as tensors of any shape.

  Returns (y, [batch mean, batch variance] per BN); the statistics list is empty unless training.
  """
  y, new_statistics = x, []
  for index, (depthwise, strides, activation) in enumerate(structure.convs):
    kernel, gamma, beta = weights[3 * index:3 * index + 3]
    conv = tf.raw_ops.DepthwiseConv2dNative if depthwise else tf.raw_ops.Conv2D
    y = conv(input=y, filter=kernel, strides=[1, *strides, 1], padding="SAME")
    y, mean, variance = ops.batch_norm(y, gamma, beta, statistics[2 * index],
                                       statistics[2 * index + 1], training, batch_stats)
    if mean is not None:
      new_statistics += [mean, variance]
    y = ops.activate(y, activation)
  if structure.squeeze_excite is not None:
    reduce_kernel, reduce_bias, expand_kernel, expand_bias = weights[-4:]
    gate = tf.reduce_mean(y, axis=[1, 2], keepdims=True)
    gate = ops.activate(tf.nn.conv2d(gate, reduce_kernel, 1, "SAME") + reduce_bias,
                        structure.squeeze_excite)
    y = y * tf.sigmoid(tf.nn.conv2d(gate, expand_kernel, 1, "SAME") + expand_bias)
  return (x + y if structure.residual else y), new_statistics


class MixOp(keras.layers.Layer):
  """One mixed operator: N candidate operators, of which `choice` runs, with packed weights.

  Args:
    candidates: the candidate operator layers, built: templates for the packed variables' layout and
      initial values, dropped by `pack` (so their variables are freed).

  Attributes:
    candidate_names: the candidate layers' names (the stand-alone model's layers of the same names
      take their weights, `model.inherit_weights`).
    packed_weights: every candidate's trainable weights, [rows, ROW]; candidate i owns rows
      `weight_offsets[i]:weight_offsets[i + 1]` (its weights flattened, then zero padding).
    packed_statistics: every candidate's BN moving statistics, likewise by `statistic_offsets`.
    decay_mask: True where `packed_weights` holds a kernel (L2-decayed), else False (padding too);
      made on each read (it is needed once, by the optimizer), not held.
  """

  def __init__(self, candidates, **kwargs):
    super().__init__(**kwargs)
    self._templates = _Templates(candidates)
    self.candidate_names = [op.name for op in candidates]
    self.packed_weights = self.packed_statistics = None

  @property
  def num_candidates(self) -> int:
    return len(self.candidate_names)

  @property
  def decay_mask(self) -> np.ndarray:
    return self.weights_layout.pack(
        [[np.full(shape, decayed) for shape, decayed in zip(shapes, flags)]
         for shapes, flags in zip(self.weights_layout.shapes, self._decayed)]).astype(bool)

  def pack(self, x=None):
    """Creates the packed variables from the built candidates' current values; drops the candidates.

    `x`: an input to build the candidates on first (eagerly: variables cannot be created inside the
    branches of a traced switch_case); then candidate 0's output on it is returned.
    """
    candidates, self._templates = self._templates.layers, None
    output = None
    if x is not None:
      output = [op(x, training=False) for op in candidates][0]
    trainable = [op.trainable_variables for op in candidates]
    statistics = [op.non_trainable_variables for op in candidates]
    self.weights_layout, self.statistics_layout = Layout(trainable), Layout(statistics)
    self.weight_offsets = self.weights_layout.offsets
    self.statistic_offsets = self.statistics_layout.offsets
    self._decayed = [[is_decayed(v) for v in group] for group in trainable]
    initial_weights = self.weights_layout.pack([[v.numpy() for v in g] for g in trainable])
    initial_statistics = self.statistics_layout.pack([[v.numpy() for v in g] for g in statistics])
    self.packed_weights = self.add_weight(
        shape=initial_weights.shape, initializer=lambda shape, dtype: initial_weights, name="weights")
    self.packed_statistics = self.add_weight(
        shape=initial_statistics.shape, initializer=lambda shape, dtype: initial_statistics,
        trainable=False, name="statistics")
    # Candidates alike share a branch; `branch_of[choice]` is its index.
    structures = [structure_of(op) for op in candidates]
    self.structures = list(dict.fromkeys(structures))
    self.branch_of = np.array([self.structures.index(s) for s in structures], np.int32)
    num = len(candidates)
    members = [[c for c in range(num) if self.branch_of[c] == b] for b in range(len(self.structures))]
    self._shapes = [(_Shapes(self.weights_layout, m, num), _Shapes(self.statistics_layout, m, num))
                    for m in members]
    # Everything a step looks up by the choice, in one table: one gather instead of ~30 graph nodes.
    self._lookup = np.stack([self.weight_offsets[:-1], self.weight_offsets[1:],
                             self.statistic_offsets[:-1], self.statistic_offsets[1:],
                             self.branch_of], axis=1).astype(np.int32)
    self.built = True
    return output

  def _look_up(self, choice):
    """(weight start, weight stop, statistics start, statistics stop, branch) of `choice`."""
    return tf.unstack(tf.gather(tf.constant(self._lookup), choice), num=5)

  def weight_rows(self, choice):
    """The rows of `packed_weights` that candidate `choice` (int or scalar tensor) owns."""
    start, stop = self._look_up(choice)[:2]
    return tf.range(start, stop)

  def call(self, x, choice, training=False, batch_stats=False, weights=None):
    """Runs candidate `choice` on `x`; `weights`: its rows of `packed_weights` (read here if None)."""
    weight_start, weight_stop, start, stop, branch = self._look_up(choice)
    if weights is None:
      weights = read_rows(self.packed_weights, tf.range(weight_start, weight_stop))
    rows = tf.range(start, stop)
    statistics = read_rows(self.packed_statistics, rows)
    update = bool(training) and not batch_stats
    branches = [functools.partial(self._branch, index, x, choice, weights, statistics, training,
                                  batch_stats, update)
                for index in range(len(self.structures))]
    outputs = branches[0]() if len(branches) == 1 else tf.switch_case(branch, branches)
    if not update:
      return outputs
    y, batch_statistics = outputs
    # The moving averages of every candidate at once, outside the branches (fewer nodes in each).
    write_rows(self.packed_statistics, rows, ops.moving_average(statistics, batch_statistics))
    return y

  def _branch(self, index, x, choice, weights, statistics, training, batch_stats, update):
    # Every branch takes the selected candidate's rows, read once outside the switch_case, so the
    # gradient is only as large as the selected candidate's weights.
    weight_shapes, statistic_shapes = self._shapes[index]
    y, batch_statistics = run_structure(
        self.structures[index], weight_shapes.unpack(weights, choice),
        statistic_shapes.unpack(statistics, choice), x, training, batch_stats)
    if not update:
      return y
    # stop_gradient on the branch's output, not earlier: the switch_case's gradient differentiates every
    # branch output, and would otherwise carry zeros back through the variance arithmetic.
    return y, tf.stop_gradient(statistic_shapes.repack(batch_statistics, choice))

  def candidate_weights(self, choice):
    """Candidate `choice`'s (trainable, non-trainable) values as numpy arrays, in its layer's order."""
    def values(variable, layout):
      return layout.unpack(variable.numpy()[layout.offsets[choice]:layout.offsets[choice + 1]], choice)
    return (values(self.packed_weights, self.weights_layout),
            values(self.packed_statistics, self.statistics_layout))
