"""Parameters and FLOPs of architectures, computed from the spec without building a model.

FLOPs here are multiply-accumulates of convolutions and the classifier (the convention of
NAS-Bench-Macro and most NAS papers); parameters count every weight Keras counts, BN moving statistics
included. Both follow `operators.py`, the structure `nn/ops.py` builds, and the tests check them
against Keras' `count_params`. Both are additive over layers, so they plug into the same tables and
samplers as latency.
"""

import dataclasses
from typing import Sequence

from pcnas_tf.space import operators
from pcnas_tf.space import search_space as space_lib


@dataclasses.dataclass(frozen=True)
class Cost:
  params: int = 0
  flops: int = 0

  def __add__(self, other):
    return Cost(self.params + other.params, self.flops + other.flops)


def _shrink(size: int, stride: int) -> int:
  return -(-size // stride)  # "same" padding


def _conv_bn(in_channels, out_channels, kernel, stride, height, width, depthwise=False):
  """Cost of one ConvBN and its output spatial size; kernel and stride are (h, w) pairs."""
  out_h, out_w = _shrink(height, stride[0]), _shrink(width, stride[1])
  weights = kernel[0] * kernel[1] * in_channels * (1 if depthwise else out_channels)
  return Cost(weights + 4 * out_channels, weights * out_h * out_w), out_h, out_w


def _sequence(convs, in_channels, height, width):
  """Cost of a chain of (out_channels, kernel, stride, depthwise) convolutions."""
  total, channels = Cost(), in_channels
  for out_channels, kernel, stride, depthwise in convs:
    cost, height, width = _conv_bn(channels, out_channels, kernel, stride, height, width, depthwise)
    total, channels = total + cost, out_channels
  return total, height, width


def op_cost(op, in_channels, out_channels, stride, height, width, se=False) -> Cost:
  """Parameters and FLOPs of one operator at an input of `height` x `width`."""
  convs = [(conv.channels, operators.pair(conv.kernel), operators.pair(conv.stride), conv.depthwise)
           for conv in operators.convs(space_lib.parse_op(op), in_channels, out_channels, stride)]
  cost, out_h, out_w = _sequence(convs, in_channels, height, width)
  if se and convs:
    hidden = operators.se_channels(out_channels)
    weights = 2 * out_channels * hidden
    cost += Cost(weights + hidden + out_channels, weights)
  return cost


def layer_input_sizes(space, resolution) -> list[tuple[int, int]]:
  """The spatial size (height, width) at the input of each mixop."""
  height, width = _shrink(resolution[0], space.stem_stride), _shrink(resolution[1], space.stem_stride)
  sizes = []
  for layer in space.layers:
    sizes.append((height, width))
    height, width = _shrink(height, layer.stride), _shrink(width, layer.stride)
  return sizes


def stem_cost(space, input_shape, se=False) -> Cost:
  """Cost of the stem and the fixed first operator: what runs before the first mixop."""
  height, width, channels = input_shape
  cost, height, width = _conv_bn(channels, space.stem_channels, (3, 3),
                                 (space.stem_stride, space.stem_stride), height, width)
  if space.first_op is not None:
    op, out_channels = space.first_op
    cost += op_cost(op, space.stem_channels, out_channels, 1, height, width, se)
  return cost


def head_cost(space, input_shape, num_classes) -> Cost:
  """Cost of the head: the optional 1x1 conv and the classifier, after the last mixop."""
  height, width = layer_input_sizes(space, input_shape[:2])[-1]
  height, width = _shrink(height, space.layers[-1].stride), _shrink(width, space.layers[-1].stride)
  features = space.layers[-1].channels
  cost = Cost()
  if space.head_channels:
    cost, _, _ = _conv_bn(features, space.head_channels, (1, 1), (1, 1), height, width)
    features = space.head_channels
  return cost + Cost(features * num_classes + num_classes, features * num_classes)


def fixed_cost(space, input_shape, num_classes, se=False) -> Cost:
  """Cost of the parts every architecture shares: stem, fixed first operator, head."""
  return stem_cost(space, input_shape, se) + head_cost(space, input_shape, num_classes)


def layer_costs(space, input_shape, se=False) -> list[list[Cost]]:
  """`costs[l][i]`: the cost of choice i at mixop l (additive over layers)."""
  in_channels = space.layer_input_channels()
  sizes = layer_input_sizes(space, input_shape[:2])
  return [[op_cost(op, in_channels[index], layer.channels, layer.stride, *sizes[index], se)
           for op in layer.choices]
          for index, layer in enumerate(space.layers)]


def arch_cost(arch: Sequence[str], space, input_shape, num_classes, se=False) -> Cost:
  """Parameters and FLOPs of a whole architecture."""
  costs = layer_costs(space, input_shape, se)
  total = fixed_cost(space, input_shape, num_classes, se)
  for index, choice in enumerate(space.indices(arch)):
    total += costs[index][choice]
  return total
