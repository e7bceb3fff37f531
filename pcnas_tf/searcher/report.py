"""Pictures of a search: pool potentials and costs per interval, and the chosen architecture.

Drawn on `matplotlib.figure.Figure`s, not through pyplot, so that drawing them leaves the backend of a
notebook's own plots as it was.
"""

from matplotlib import figure as figure_lib
from matplotlib import patches

from pcnas_tf.space import search_space as space_lib

_FAMILY_COLOURS = {"MBConv": "#4c72b0", "NConv": "#dd8452", "DConv": "#55a868", "RConv": "#c44e52",
                   space_lib.IDENTITY: "#bbbbbb"}


def plot_search(result: dict, path: str) -> None:
  """Pool potentials per interval (left) and pool costs against the budget (right)."""
  intervals = result["intervals"]
  constraint = result["constraint"]
  figure = figure_lib.Figure(figsize=(11, 4))
  left, right = figure.subplots(1, 2)
  for record in intervals:
    x = record["interval"] + 1
    left.scatter([x] * len(record["pool_potentials"]), record["pool_potentials"], c="#4c72b0", s=14)
    right.scatter([x] * len(record.get("pool_costs", [])), record.get("pool_costs", []), c="#dd8452", s=14)
  left.plot([r["interval"] + 1 for r in intervals], [r["pool_potentials"][0] for r in intervals], "-",
            c="#4c72b0", label="best")
  left.set(xlabel="mixop decided", ylabel="potential (validation accuracy)", title="Pool potentials")
  left.legend()
  right.axhline(constraint["budget"], c="k", ls="--", label="budget")
  right.set(xlabel="mixop decided", ylabel=f"{constraint['kind']} ({constraint['unit']}), cheapest completion",
            title="Pool costs")
  right.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=110)


def draw_architecture(space, arch, path: str) -> None:
  """One box per layer in the manner of the paper's Figure 3: width ~ kernel, height ~ expansion."""
  figure = figure_lib.Figure(figsize=(max(6, 0.62 * len(arch) + 2), 3.2))
  axis = figure.subplots()
  for index, op in enumerate(arch):
    spec = space_lib.parse_op(op)
    height = 0.25 + 0.12 * spec.expand if spec.family != space_lib.IDENTITY else 0.2
    width = 0.25 + 0.07 * spec.kernel
    axis.add_patch(patches.Rectangle((index - width / 2, -height / 2), width, height,
                                     color=_FAMILY_COLOURS[spec.family]))
    label = "Id" if spec.family == space_lib.IDENTITY else f"{spec.family[:2]}\nE{spec.expand} K{spec.kernel}"
    axis.text(index, -height / 2 - 0.08, label, ha="center", va="top", fontsize=7)
    if space.layers[index].stride == 2:
      axis.text(index, height / 2 + 0.05, "s2", ha="center", va="bottom", fontsize=7)
  axis.set_xlim(-1, len(arch))
  axis.set_ylim(-1.6, 1.3)
  axis.axis("off")
  axis.set_title(f"{space.name}: {space.arch_to_string(arch)}")
  figure.tight_layout()
  figure.savefig(path, dpi=110)
