"""The supergraph: L mixed operators whose choice comes in as a path tensor (paper section 3.2).

`Supergraph(space, input_shape, num_classes)(images, path, training)` runs only the selected operator of
each mixop (`mixop.MixOp`: packed weights, a `tf.switch_case` on its entry of `path`), so one traced
graph serves every architecture and a step costs what the chosen architecture costs.
"""

import gc

import keras
import tensorflow as tf

from pcnas_tf.nn import mixop as mixop_lib
from pcnas_tf.nn import ops

# Templates above this size are collected as soon as their mixop is packed (a collection costs ~0.1 s
# with TensorFlow loaded, so the tests' tiny supergraphs skip it).
TEMPLATES_COLLECTED_BYTES = 8 << 20


def _clear_eager_kernel_cache():
  """Drops the kernels cached for the eager build (one per op and shape; 0.21 GiB for a large-space
  supergraph at 224x224). No public API does this; the traced steps use their own kernels."""
  from tensorflow.python.eager import context  # pylint: disable=g-import-not-at-top
  if hasattr(context.context(), "clear_kernel_cache"):
    context.context().clear_kernel_cache()


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
        mixop_lib.MixOp([ops.candidate_layer(space, index, op, se) for op in layer.choices],
                        name=f"mixop_{index:02d}")
        for index, layer in enumerate(space.layers)]
    self.head = ops.head_layer(space, num_classes)
    self._build_every_candidate()

  def _build_every_candidate(self):
    # Every candidate is built eagerly, on one zero image, packed, and dropped, mixop by mixop. Keras
    # layers hold reference cycles, so dropped templates are freed only by Python's cyclic collector:
    # collected after each mixop whose templates are large, only one mixop's are alive at a time. With
    # the eager kernels dropped after each mixop too, a large-space supergraph at width 1.0 and 224x224
    # adds 0.95 GiB for its 0.62 GiB of variables (1.48 GiB with neither).
    x = self._stem(tf.zeros((1,) + self.image_shape), training=False)
    for mixop in self.mixops:
      x = mixop.pack(x)
      _clear_eager_kernel_cache()
      if mixop.packed_weights.shape[0] * mixop_lib.ROW * 4 > TEMPLATES_COLLECTED_BYTES:
        gc.collect()
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
      path_weights: `path_weights(path_rows(path))`, when the caller differentiates with respect to
        them.
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
    if start < stop:
      path = tf.unstack(path, num=len(self.mixops))  # one node, not one slice per mixop
    for index in range(start, stop):
      x = self.mixops[index](x, path[index], training=training, batch_stats=batch_stats,
                             weights=None if path_weights is None else path_weights[index])
    return x

  def path_rows(self, path):
    """For each mixop, the rows of its packed weights that `path`'s candidate owns."""
    path = tf.unstack(path, num=len(self.mixops))
    return [mixop.weight_rows(path[index]) for index, mixop in enumerate(self.mixops)]

  def path_weights(self, rows):
    """The values of each mixop's packed weights at `rows` (`path_rows`): the path's weights.

    PathSGD's gradients are taken with respect to these, not the packed variables: a gradient of the
    size of one path's weights instead of every candidate's, and all-reduced at that size.
    """
    return [mixop_lib.read_rows(mixop.packed_weights, r) for mixop, r in zip(self.mixops, rows)]

  def shared_layers(self):
    """The layers every path uses: stem, fixed first operator, head."""
    return [layer for layer in (self.stem, self.first_op, self.head) if layer is not None]

  def candidate_name(self, index, choice):
    """The name of the operator layer for `choice` at mixop `index` (as `model.build_model` names it)."""
    return self.mixops[index].candidate_names[choice]

  def get_config(self):
    return {"space": self.space.to_json(), "input_shape": self.image_shape,
            "num_classes": self.num_classes, "se": self.se}
