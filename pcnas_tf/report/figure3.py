"""A network drawn in the manner of the paper's Figure 3: one block per layer whose shape shows its
operator, with the stages' channels, strides and resolutions.

A block's width grows with the kernel size and its height with the expansion ratio (`block_size`),
its colour is the operator's family, darker for larger kernels; an Identity is a thin grey bar. The
stem and the head are the fixed grey blocks at the ends. Stages (a stride or a change of channels
starts one) are shaded bands labelled with their channels and output resolution; a stride-2 layer
carries a down arrow.
"""

import matplotlib.colors
from matplotlib import patches
from matplotlib.figure import Figure

from pcnas_tf.report import figures
from pcnas_tf.space import cost
from pcnas_tf.space import search_space as space_lib

FAMILY_COLOURS = {"MBConv": "#4c72b0", "NConv": "#dd8452", "DConv": "#55a868", "RConv": "#8172b3"}
FIXED_COLOUR, IDENTITY_COLOUR = "#bdbdbd", "#9e9e9e"
_SHORT = {"MBConv": "MB", "NConv": "N", "DConv": "D", "RConv": "R"}


def block_size(spec: space_lib.OpSpec, projection: bool = False) -> tuple[float, float]:
  """(width, height) of an operator's block: width from the kernel size, height from the expansion
  (an Identity is drawn as a thin bar; where it projects, as a 1x1 convolution's block)."""
  if spec.family == space_lib.IDENTITY:
    return (0.3, 0.6) if projection else (0.12, 0.6)
  return 0.3 + 0.08 * spec.kernel, 0.45 + 0.3 * spec.expand


def projects(space, index: int) -> bool:
  """Whether an Identity at mixop `index` is a 1x1 projection (its stride or channels change)."""
  layer = space.layers[index]
  return layer.stride != 1 or space.layer_input_channels()[index] != layer.channels


def block_colour(spec: space_lib.OpSpec) -> str:
  """The family's colour, lighter for small kernels (3) and full for large ones (7 and up)."""
  if spec.family == space_lib.IDENTITY:
    return IDENTITY_COLOUR
  shade = min(1.0, 0.45 + 0.14 * (spec.kernel - 3))
  base = matplotlib.colors.to_rgb(FAMILY_COLOURS[spec.family])
  return matplotlib.colors.to_hex([1 - shade * (1 - c) for c in base])


def block_label(spec: space_lib.OpSpec, projection: bool = False) -> str:
  if spec.family == space_lib.IDENTITY:
    return "1x1\nproj" if projection else "skip"
  return f"{_SHORT[spec.family]}{spec.expand}\n{spec.kernel}x{spec.kernel}"


def draw_architecture(space, arch, input_shape, path: str, title: str | None = None) -> None:
  """Draws `arch` (op names) of `space` at `input_shape` (H, W, C) and writes the PNG to `path`."""
  sizes = cost.layer_input_sizes(space, tuple(input_shape[:2]))
  slots = len(arch) + 2 + (space.first_op is not None)
  tallest = max(block_size(space_lib.parse_op(op))[1] for op in arch)
  figure = Figure(figsize=(max(8.0, 0.78 * slots + 1.2), 2.2 + 0.75 * tallest), layout="constrained")
  axis = figure.subplots()
  top = tallest / 2 + 0.25
  position = _draw_fixed(axis, 0, "stem", f"3x3\n{space.stem_channels}", top)
  if space.first_op is not None:
    position = _draw_fixed(axis, position, space.first_op[0].replace("_", " "), f"{space.first_op[1]}", top)
  first = position
  for index, op in enumerate(arch):
    _draw_block(axis, position + index, space_lib.parse_op(op), space.layers[index].stride == 2, top,
                projects(space, index))
  _draw_stages(axis, space, sizes, first, top)
  _draw_fixed(axis, first + len(arch), "head", f"1x1\n{space.head_channels}" if space.head_channels else "",
              top)
  _draw_key(axis, arch)
  axis.set_xlim(-0.6, slots - 0.4)
  axis.set_ylim(-top - 1.1, top + 0.75)
  axis.axis("off")
  axis.set_title(title or f"{space.name}: {space.arch_to_string(arch)}", fontsize=11)
  figures.save(figure, path)


def _draw_fixed(axis, x, name, detail, top) -> int:
  axis.add_patch(patches.FancyBboxPatch((x - 0.3, -0.5), 0.6, 1.0, boxstyle="round,pad=0.02",
                                        color=FIXED_COLOUR))
  axis.text(x, 0, detail, ha="center", va="center", fontsize=7)
  axis.text(x, -top - 0.15, name, ha="center", va="top", fontsize=7)
  return x + 1


def _draw_block(axis, x, spec, strided, top, projection):
  width, height = block_size(spec, projection)
  axis.add_patch(patches.Rectangle((x - width / 2, -height / 2), width, height, facecolor=block_colour(spec),
                                   edgecolor="#333333", linewidth=0.6))
  axis.text(x, -top - 0.15, block_label(spec, projection), ha="center", va="top", fontsize=7)
  if strided:
    axis.annotate("", xy=(x, top - 0.05), xytext=(x, top + 0.3),
                  arrowprops={"arrowstyle": "-|>", "color": "#c44e52", "lw": 1.4})


def _draw_stages(axis, space, sizes, first, top):
  """Alternating bands over each stage's layers, labelled with channels and output resolution."""
  starts = [i for i, layer in enumerate(space.layers)
            if i == 0 or layer.stride != 1 or layer.channels != space.layers[i - 1].channels]
  for number, start in enumerate(starts):
    stop = starts[number + 1] if number + 1 < len(starts) else len(space.layers)
    last = space.layers[stop - 1]
    height, width = sizes[stop - 1]
    height, width = -(-height // last.stride), -(-width // last.stride)
    axis.add_patch(patches.Rectangle((first + start - 0.48, -top), stop - start - 0.04, 2 * top,
                                     color="#f2f2f2" if number % 2 == 0 else "#e6ecf5", zorder=0))
    axis.text(first + (start + stop - 1) / 2, top + 0.38, f"{last.channels} ch, {height}x{width}",
              ha="center", va="bottom", fontsize=7, color="#333333")


def _draw_key(axis, arch):
  families = sorted({space_lib.parse_op(op).family for op in arch})
  handles = [patches.Patch(color=FAMILY_COLOURS.get(f, IDENTITY_COLOUR), label=f) for f in families]
  key = "width: kernel size, height: expansion ratio, darker: larger kernel, \u2193 stride 2"
  handles.append(patches.Patch(color="white", label=key))
  axis.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False,
              bbox_to_anchor=(0.5, -0.02))
