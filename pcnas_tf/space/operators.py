"""The structure of each searchable operator, as data: the convolutions it runs (each followed by BN),
which of them are activated, and its squeeze-and-excitation width. `nn/ops.py` builds Keras layers from
it and `cost.py` counts parameters and FLOPs from it, so the two cannot disagree.

  MBConv_e_k  1x1 expand to e x C (skipped when e == 1), kxk depthwise, 1x1 project
  NConv_e_k   1x1 expand, kxk conv, 1x1 project
  DConv_e_k   1x1 expand, two kxk convs (the first strided), 1x1 project
  RConv_e_k   1x1 expand, 1xk then kx1 conv (a kxk receptive field), 1x1 project
  Identity    nothing, or a 1x1 projection where the stride or the channels change
"""

import dataclasses

from pcnas_tf.space import search_space as space_lib


@dataclasses.dataclass(frozen=True)
class Conv:
  """One ConvBN of an operator; `kernel` and `stride` are ints (square) or (height, width) pairs."""
  name: str
  channels: int
  kernel: int | tuple[int, int]
  stride: int | tuple[int, int] = 1
  depthwise: bool = False
  activated: bool = True


def se_channels(channels: int) -> int:
  """Bottleneck width of the squeeze-and-excitation block."""
  return max(8, channels // 4)


def convs(spec: space_lib.OpSpec, in_channels: int, out_channels: int, stride: int) -> list[Conv]:
  """The ConvBN sequence of one searchable operator (empty for a shape-keeping Identity)."""
  if spec.family == space_lib.IDENTITY:
    if stride == 1 and in_channels == out_channels:
      return []
    return [Conv("proj", out_channels, 1, stride, activated=False)]
  mid, k = in_channels * spec.expand, spec.kernel
  sequence = [] if (spec.family == "MBConv" and spec.expand == 1) else [Conv("expand", mid, 1)]
  sequence += {
      "MBConv": [Conv("depthwise", mid, k, stride, depthwise=True)],
      "NConv": [Conv("conv", mid, k, stride)],
      "DConv": [Conv("conv1", mid, k, stride), Conv("conv2", mid, k)],
      "RConv": [Conv("conv1xk", mid, (1, k), (1, stride)), Conv("convkx1", mid, (k, 1), (stride, 1))],
  }[spec.family]
  return sequence + [Conv("project", out_channels, 1, activated=False)]


def pair(value) -> tuple[int, int]:
  """An int or (height, width) pair as a pair."""
  return (value, value) if isinstance(value, int) else tuple(value)
