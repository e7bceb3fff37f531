"""Stand-alone models: one architecture of a space as a plain functional Keras model.

`build_model` uses the same operator layers as the supergraph, so `inherit_weights` can copy a path's
shared weights into it and the two compute the same function.
"""

from typing import Sequence

import keras

from pcnas_tf.nn import ops


def build_model(arch: Sequence[str], space, input_shape, num_classes, se=False, name=None):
  """Builds the stand-alone network of `arch`.

  Args:
    arch: one operator name per mixop.
    space: the `SearchSpace` the architecture belongs to.
    input_shape: (height, width, channels).
    num_classes: outputs of the classifier; the model returns logits.
    se: add squeeze-and-excitation at the end of each operator.
    name: the Keras model name (default: `pcnas_<space>_<arch string>`).

  Returns:
    A functional `keras.Model`, saveable as `.keras`.
  """
  arch = space.validate_arch(arch)
  inputs = keras.Input(tuple(input_shape), name="images")
  x = ops.stem_layer(space)(inputs)
  first_op = ops.first_op_layer(space, se)
  if first_op is not None:
    x = first_op(x)
  for index, op in enumerate(arch):
    x = ops.candidate_layer(space, index, op, se)(x)
  logits = ops.head_layer(space, num_classes)(x)
  name = name or f"pcnas_{space.name}_{space.arch_to_string(arch)}"
  return keras.Model(inputs, logits, name=name)


def inherit_weights(supergraph, arch: Sequence[str], model: keras.Model) -> keras.Model:
  """Copies the supergraph's weights of `arch`'s path into `model` (built by `build_model`).

  Raises:
    ValueError: if the model was not built for this architecture and supergraph shape.
  """
  space = supergraph.space
  path = space.indices(arch)

  def target_of(name):
    try:
      return model.get_layer(name)
    except ValueError as error:
      raise ValueError(f"Model {model.name!r} has no layer {name!r}; it was not built for "
                       f"architecture {space.arch_to_string(arch)} of space {space.name!r}.") from error

  for source in supergraph.shared_layers():
    target_of(source.name).set_weights(source.get_weights())
  for index, choice in enumerate(path):
    target = target_of(supergraph.candidate_name(index, choice))
    trainable, statistics = supergraph.mixops[index].candidate_weights(choice)
    for variable, value in zip(target.trainable_variables + target.non_trainable_variables,
                               trainable + statistics):
      variable.assign(value)
  return model
