"""Operators of the search spaces (paper appendix A.1), the fixed stem and head.

Every operator is one Keras layer built from its name, so the supergraph's mixops and the stand-alone
models run the same code and their weights can be copied one to one:

  MBConv_X_K  1x1 conv to X*cin (skipped when X=1), BN, act, KxK depthwise (stride), BN, act, 1x1, BN
  NConv_X_K   1x1 to X*cin, BN, act, KxK conv (stride), BN, act, 1x1, BN
  DConv_X_K   1x1 to X*cin, BN, act, KxK conv (stride), BN, act, KxK conv, BN, act, 1x1, BN
  RConv_X_K   1x1 to X*cin, BN, act, 1xK conv (stride), BN, act, Kx1 conv (stride), BN, act, 1x1, BN
  Identity    nothing, or a 1x1 conv with the stride plus BN where the shape changes (NAS-Bench-Macro)

A residual connection is added where the stride is 1 and the channels match; an optional
squeeze-and-excitation block ends each operator (used for final models, paper 4.1).
"""

import keras
import tensorflow as tf

from pcnas_tf.space import operators
from pcnas_tf.space import search_space as space_lib

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3
KERNEL_INIT = "he_normal"


def _conv(filters, kernel, strides=1, name=None):
  return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                             kernel_initializer=KERNEL_INIT, name=name)


def _bn(name=None):
  # Batch statistics are per replica: synchronized BN all-reduces through `merge_call`, which
  # tf.distribute does not allow inside the switch_case of a mixop.
  return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def activate(x, kind):
  """The activation `kind` (`relu`, `relu6` or None) of `x`."""
  if kind is None:
    return x
  return tf.nn.relu6(x) if kind == "relu6" else tf.nn.relu(x)


def batch_norm(x, gamma, beta, moving_mean, moving_variance, training, batch_stats=False):
  """Batch normalisation of `x`: (y, batch mean, batch variance), the last two None unless training.

  TensorFlow's fused op, not Keras' layer (moments + normalise: ~40 graph nodes with the gradient,
  against 2): in the supergraph, graph nodes are step time. `batch_stats`: normalise with this
  batch's statistics and return no statistics to average (potential evaluation's mode). The variance
  returned is the biased one, which Keras averages into the moving variance.
  """
  if training or batch_stats:
    empty = tf.constant([], x.dtype)  # the op's contract when training without its own average
    y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=BN_EPSILON, is_training=True)
    if batch_stats:
      return y, None, None
    # The fused op returns the unbiased variance (n - 1 denominator); Keras averages the biased one.
    count = tf.cast(tf.size(x) // tf.shape(x)[-1], variance.dtype)
    return y, mean, variance * (count - 1.0) / count
  y = tf.raw_ops.FusedBatchNormV3(x=x, scale=gamma, offset=beta, mean=moving_mean,
                                  variance=moving_variance, epsilon=BN_EPSILON, is_training=False)[0]
  return y, None, None


def moving_average(average, value):
  """Keras' BN moving-average update of `average` with a batch's `value` (momentum `BN_MOMENTUM`)."""
  return BN_MOMENTUM * average + (1.0 - BN_MOMENTUM) * value


@keras.saving.register_keras_serializable(package="pcnas_tf")
class ConvBN(keras.layers.Layer):
  """A convolution (regular or depthwise) followed by BN and, optionally, the activation."""

  def __init__(self, filters, kernel, strides=1, depthwise=False, activation=None, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.kernel, self.strides = filters, kernel, strides
    self.depthwise, self.activation = depthwise, activation
    if depthwise:
      self.conv = keras.layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False,
                                               depthwise_initializer=KERNEL_INIT, name="conv")
    else:
      self.conv = _conv(filters, kernel, strides, name="conv")
    self.bn = _bn(name="bn")

  def build(self, input_shape):
    # Explicit builds create every sub-layer's variables, so `keras.saving.load_model` can restore them.
    self.conv.build(input_shape)
    self.bn.build(self.conv.compute_output_shape(input_shape))

  def compute_output_shape(self, input_shape):
    return self.conv.compute_output_shape(input_shape)

  def call(self, x, training=False, batch_stats=False):
    bn = self.bn
    y, mean, variance = batch_norm(self.conv(x), bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance,
                                   training, batch_stats)
    if mean is not None:
      bn.moving_mean.assign(moving_average(bn.moving_mean, mean))
      bn.moving_variance.assign(moving_average(bn.moving_variance, variance))
    return activate(y, self.activation)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel": self.kernel,
            "strides": self.strides, "depthwise": self.depthwise, "activation": self.activation}


@keras.saving.register_keras_serializable(package="pcnas_tf")
class SqueezeExcite(keras.layers.Layer):
  """Squeeze-and-excitation: channel gates from globally pooled features."""

  def __init__(self, channels, activation="relu", **kwargs):
    super().__init__(**kwargs)
    self.channels, self.activation = channels, activation
    self.pool = keras.layers.GlobalAveragePooling2D(keepdims=True)
    self.reduce = keras.layers.Conv2D(operators.se_channels(channels), 1, name="reduce")
    self.expand = keras.layers.Conv2D(channels, 1, activation="sigmoid", name="expand")

  def build(self, input_shape):
    pooled = self.pool.compute_output_shape(input_shape)
    self.reduce.build(pooled)
    self.expand.build(self.reduce.compute_output_shape(pooled))

  def compute_output_shape(self, input_shape):
    return input_shape

  def call(self, x):
    return x * self.expand(activate(self.reduce(self.pool(x)), self.activation))

  def get_config(self):
    return {**super().get_config(), "channels": self.channels, "activation": self.activation}


def _op_convs(spec, in_channels, out_channels, stride, activation):
  """The ConvBN layers of one searchable operator, as `space/operators.py` lays them out."""
  return [ConvBN(conv.channels, conv.kernel, conv.stride, depthwise=conv.depthwise,
                 activation=activation if conv.activated else None, name=conv.name)
          for conv in operators.convs(spec, in_channels, out_channels, stride)]


@keras.saving.register_keras_serializable(package="pcnas_tf")
class Operator(keras.layers.Layer):
  """One candidate operator of a mixop, built from its name (see the module docstring)."""

  def __init__(self, op_name, in_channels, out_channels, stride, activation="relu6", se=False,
               **kwargs):
    super().__init__(**kwargs)
    self.op_name, self.in_channels, self.out_channels = op_name, in_channels, out_channels
    self.stride, self.activation, self.se = stride, activation, se
    spec = space_lib.parse_op(op_name)
    self.convs = _op_convs(spec, in_channels, out_channels, stride, activation)
    self.residual = (spec.family != space_lib.IDENTITY and stride == 1
                     and in_channels == out_channels)
    self.squeeze_excite = (SqueezeExcite(out_channels, activation, name="se")
                           if se and self.convs else None)

  def build(self, input_shape):
    shape = input_shape
    for conv in self.convs:
      conv.build(shape)
      shape = conv.compute_output_shape(shape)
    if self.squeeze_excite is not None:
      self.squeeze_excite.build(shape)

  def call(self, x, training=False, batch_stats=False):
    y = x
    for conv in self.convs:
      y = conv(y, training=training, batch_stats=batch_stats)
    if self.squeeze_excite is not None:
      y = self.squeeze_excite(y)
    return x + y if self.residual else y

  def compute_output_shape(self, input_shape):
    batch, height, width, _ = input_shape
    shrink = lambda size: None if size is None else -(-size // self.stride)
    return (batch, shrink(height), shrink(width), self.out_channels)

  def get_config(self):
    return {**super().get_config(), "op_name": self.op_name, "in_channels": self.in_channels,
            "out_channels": self.out_channels, "stride": self.stride,
            "activation": self.activation, "se": self.se}


@keras.saving.register_keras_serializable(package="pcnas_tf")
class Head(keras.layers.Layer):
  """The fixed classifier: 1x1 conv (if any), BN, activation, global average pool, dense logits."""

  def __init__(self, channels, num_classes, activation, **kwargs):
    super().__init__(**kwargs)
    self.channels, self.num_classes, self.activation = channels, num_classes, activation
    self.feature = ConvBN(channels, 1, activation=activation, name="feature") if channels else None
    self.pool = keras.layers.GlobalAveragePooling2D()
    self.classifier = keras.layers.Dense(num_classes, name="classifier")

  def build(self, input_shape):
    shape = input_shape
    if self.feature is not None:
      self.feature.build(shape)
      shape = self.feature.compute_output_shape(shape)
    self.classifier.build(self.pool.compute_output_shape(shape))

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.num_classes)

  def call(self, x, training=False, batch_stats=False):
    if self.feature is not None:
      x = self.feature(x, training=training, batch_stats=batch_stats)
    return self.classifier(self.pool(x))

  def get_config(self):
    return {**super().get_config(), "channels": self.channels, "num_classes": self.num_classes,
            "activation": self.activation}


def stem_layer(space):
  """The fixed 3x3 input convolution."""
  return ConvBN(space.stem_channels, 3, space.stem_stride, activation=space.activation, name="stem")


def first_op_layer(space, se=False):
  """ProxylessNAS' fixed MBConv_1_3 after the stem, or None for spaces without one."""
  if space.first_op is None:
    return None
  op, channels = space.first_op
  return Operator(op, space.stem_channels, channels, 1, space.activation, se, name="first_op")


def layer_name(index: int, op: str) -> str:
  """The name shared by a supergraph candidate and the stand-alone model's layer."""
  return f"layer_{index:02d}_{op}"


def candidate_layer(space, index, op, se=False):
  layer = space.layers[index]
  return Operator(op, space.layer_input_channels()[index], layer.channels, layer.stride,
                  space.activation, se, name=layer_name(index, op))


def head_layer(space, num_classes):
  return Head(space.head_channels, num_classes, space.activation, name="head")
