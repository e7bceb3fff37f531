"""What a latency table measures: one probe model per (layer, operator) at that layer's input shape,
the stem and head, a reference network, and whole networks for calibration and yardsticks."""

from typing import Callable, Sequence

import numpy as np

from pcnas_tf.space import cost


def _input_model(shape, layer):
  import keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input(tuple(shape))
  return keras.Model(inputs, layer(inputs))


def _stem_model(space, shape):
  import keras  # pylint: disable=g-import-not-at-top
  from pcnas_tf.nn import ops  # pylint: disable=g-import-not-at-top
  inputs = keras.Input(tuple(shape))
  x = ops.stem_layer(space)(inputs)
  first_op = ops.first_op_layer(space)
  return keras.Model(inputs, first_op(x) if first_op is not None else x)


def op_probes(space, resolution) -> list[list[tuple[str, tuple, Callable | None]]]:
  """Per layer and choice: (measurement key, input shape, model factory or None when it costs 0)."""
  from pcnas_tf.nn import ops  # pylint: disable=g-import-not-at-top
  sizes = cost.layer_input_sizes(space, resolution)
  in_channels = space.layer_input_channels()
  probes = []
  for index, layer in enumerate(space.layers):
    shape = (*sizes[index], in_channels[index])
    row = []
    for op in layer.choices:
      key = f"op/{op}/{'x'.join(map(str, shape))}/{layer.channels}/s{layer.stride}"
      free = cost.op_cost(op, shape[2], layer.channels, layer.stride, *shape[:2]).flops == 0
      factory = None if free else (lambda i=index, o=op: ops.candidate_layer(space, i, o))
      row.append((key, shape, factory))
    probes.append(row)
  return probes


def _head_shape(space, resolution):
  height, width = cost.layer_input_sizes(space, resolution)[-1]
  stride = space.layers[-1].stride
  return (-(-height // stride), -(-width // stride), space.layers[-1].channels)


def reference_arch(space) -> str:
  """The network every timing is paired with: each layer at its middle choice (a mid-sized network)."""
  return space.arch_to_string(space.arch_from_indices([len(l.choices) // 2 for l in space.layers]))


def reference_model(space, metadata):
  return network_model(space, metadata, reference_arch(space))


def network_model(space, metadata, arch: str):
  """The whole network `arch` (a compact string) at the table's input shape."""
  from pcnas_tf.nn import model as model_lib  # pylint: disable=g-import-not-at-top
  image = (*metadata["resolution"], metadata["channels"])
  return model_lib.build_model(space.parse_arch(arch), space, image, metadata["num_classes"])


def random_archs(space, n: int, seed: int, exclude: Sequence[str] = ()) -> list[str]:
  """`n` distinct uniformly random architectures as compact strings, none of them in `exclude`."""
  rng, taken, archs = np.random.default_rng(seed), set(exclude), []
  n = min(n, space.size() - len(taken))
  while len(archs) < n:
    path = [int(rng.integers(len(layer.choices))) for layer in space.layers]
    arch = space.arch_to_string(space.arch_from_indices(path))
    if arch not in taken:
      taken.add(arch)
      archs.append(arch)
  return archs


def jobs(space, metadata, calibration_archs):
  """(key, input shape without batch, model factory) of every measurement the table needs."""
  from pcnas_tf.nn import ops  # pylint: disable=g-import-not-at-top
  resolution, channels = tuple(metadata["resolution"]), metadata["channels"]
  image = (*resolution, channels)
  jobs = [("stem", image, lambda: _stem_model(space, image)),
          ("head", _head_shape(space, resolution),
           lambda: _input_model(_head_shape(space, resolution),
                                ops.head_layer(space, metadata["num_classes"])))]
  for row in op_probes(space, resolution):
    jobs += [(key, shape, lambda f=factory, s=shape: _input_model(s, f()))
             for key, shape, factory in row if factory is not None]
  for arch in calibration_archs:
    jobs.append((f"arch/{arch}", image, lambda a=arch: network_model(space, metadata, a)))
  unique = {}
  for key, shape, factory in jobs:
    unique.setdefault(key, (key, shape, factory))
  return list(unique.values())
