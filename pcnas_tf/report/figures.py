"""Pictures of a run, as PNG: the pool per interval, the accuracy-cost scatters with their front, and
the latency table's fit to whole networks. Figure 3's drawing of a network is `figure3.py`.

Each picture is a function of the run's results (plain dicts: search_result.json and what the later
stages add) and is written atomically, so a page that embeds it never reads half a file. Figures are
`matplotlib.figure.Figure` objects, not pyplot's global ones: nothing is left open between calls.
"""

import io
import math

from matplotlib import colormaps
from matplotlib import ticker
from matplotlib.figure import Figure

from pcnas_tf import files
from pcnas_tf.report import front as front_lib

DPI = 110
BLUE, ORANGE, RED, GREY, NAVY = "#4c72b0", "#dd8452", "#c44e52", "#8c8c8c", "#1b2a6b"


def save(figure: Figure, path: str) -> None:
  """Writes `figure` to `path` as PNG, atomically."""
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=DPI)
  files.write_bytes(path, buffer.getvalue())


def _cost_label(constraint: dict) -> str:
  return f"predicted {constraint['kind']} ({constraint['unit']})"


def quantity(value: float, unit: str) -> str:
  """`1.61 ms`, or a count in engineering notation: `147k FLOPs`, `2.3M params`."""
  if unit == "ms":
    return f"{value:.3g} ms"
  for power, prefix in ((9, "G"), (6, "M"), (3, "k")):
    if abs(value) >= 10 ** power:
      return f"{value / 10 ** power:.3g}{prefix} {unit}"
  return f"{value:.3g} {unit}"


def _cost_axis(axis, unit, which="x"):
  """Counts (FLOPs, params) in engineering notation on the cost axis."""
  if unit != "ms":
    getattr(axis, f"{which}axis").set_major_formatter(ticker.EngFormatter(sep=""))


# The pool per interval ----------------------------------------------------------------------------


def plot_search(result: dict, path: str) -> None:
  """Potentials of every interval's candidates and pool (left); the pool's cheapest completions
  against the budget (right)."""
  intervals, constraint = result["intervals"], result["constraint"]
  figure = Figure(figsize=(11, 4.2), layout="constrained")
  left, right = figure.subplots(1, 2)
  for record in intervals:
    x = record["interval"] + 1
    left.scatter([x] * len(record["potentials"]), record["potentials"], s=12, c=GREY, alpha=0.45,
                 label="candidates" if x == 1 else None)
    left.scatter([x] * len(record["pool_potentials"]), record["pool_potentials"], s=22, c=BLUE,
                 label="pool" if x == 1 else None)
    right.scatter([x] * len(record.get("pool_costs", [])), record.get("pool_costs", []), s=22, c=ORANGE,
                  label="pool" if x == 1 else None)
  decided = [r["interval"] + 1 for r in intervals]
  left.plot(decided, [r["pool_potentials"][0] for r in intervals], "-", c=BLUE, label="best")
  left.set(xlabel="mixop decided", ylabel="potential (validation accuracy)",
           title="Potentials of the candidates and the pool")
  right.axhline(constraint["budget"], c="k", ls="--",
                label=f"budget {quantity(constraint['budget'], constraint['unit'])}")
  _cost_axis(right, constraint["unit"], "y")
  right.set(xlabel="mixop decided", ylabel=f"{constraint['kind']} ({constraint['unit']})",
            title="Pool: cost of each member's cheapest completion")
  for axis in (left, right):
    axis.set_xticks(decided or [1])
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize=8)
  save(figure, path)


# Accuracy against cost ----------------------------------------------------------------------------


def search_points(result: dict) -> dict:
  """The search scatter's data: `earlier` candidates ((cost, potential, interval) of the intervals
  before the last), `networks` (the last interval's candidates: whole networks), `pool` and `chosen`
  ((cost, potential, arch string)). Without intervals (EA, random search) the pool is the networks."""
  key, num_layers = result["constraint"]["prediction_key"], len(result["space"]["layers"])
  earlier, networks = [], []
  for record in result.get("intervals") or []:
    costs = record.get("candidate_costs") or [{}] * len(record["candidates"])
    points = [(cost.get(key, math.nan), potential, record["interval"] + 1)
              for cost, potential in zip(costs, record["potentials"])]
    (networks if record["interval"] + 1 == num_layers else earlier).extend(points)
  pool = [(m[key], m["potential"], m["arch_string"]) for m in result.get("final_pool", [])]
  if not networks:
    networks = [(cost, potential, None) for cost, potential, _ in pool]
  return {"earlier": earlier, "networks": networks, "pool": pool, "chosen": pool[:1]}


def plot_search_front(result: dict, path: str) -> None:
  """Potential against predicted cost of every scored candidate (left), and the whole networks scored
  in the last interval (right, once there is one): their front, the final pool, the chosen network,
  the budget."""
  points, constraint = search_points(result), result["constraint"]
  intervals = bool(result.get("intervals"))
  whole = intervals and bool(points["networks"])  # the last interval is scored: zoom on its networks
  label = "whole networks (the last interval)" if intervals else "the final pool's networks"
  figure = Figure(figsize=(13.5 if whole else 8.5, 5.4), layout="constrained")
  axes = figure.subplots(1, 2 if whole else 1, squeeze=False)[0]
  if points["earlier"]:
    cost, potential, interval = zip(*points["earlier"])
    shown = axes[0].scatter(cost, potential, c=interval, cmap=colormaps["viridis"], vmin=1,
                            vmax=max(2, max(interval)), s=16, alpha=0.5, linewidths=0,
                            label="candidates: partial models (their completions' mean)")
    figure.colorbar(shown, ax=axes[0], label="mixop decided", ticks=range(1, max(interval) + 1), shrink=0.8)
  for axis, legend in zip(axes, (True, False)):
    _draw_networks(axis, [(c, p) for c, p, _ in points["networks"]], label, legend)
    _draw_pool(axis, points["pool"], points["chosen"], legend)
    _draw_budget(axis, constraint["budget"], constraint["unit"], legend)
    axis.set(xlabel=_cost_label(constraint), ylabel="potential (validation accuracy)")
    _cost_axis(axis, constraint["unit"])
    axis.grid(alpha=0.3)
  method = result.get("search", {}).get("method", "baseline")
  axes[0].set_title("Every scored candidate" if intervals else
                    f"The final pool ({'EA' if method == 'ea' else method} search)")
  if whole:
    axes[1].set_title("The last interval's whole networks")
  if whole or not intervals:
    _label(axes[-1], points["pool"])
  figure.suptitle(f"Search: potential against predicted {constraint['kind']}")
  _legend_below(figure, axes[0])
  save(figure, path)


def plot_retrained_front(members, constraint: dict, path: str) -> None:
  """Test top-1 against measured latency of the retrained pool members (hollow: the table's
  prediction, joined to the measurement), their front, the chosen network and, for a latency
  constraint, the budget. `members`: dicts with `rank`, `arch_string`, `test_top1`,
  `measured_latency_ms` (None if not measured) and the predicted cost."""
  key = constraint["prediction_key"]
  latency = constraint["kind"] == "latency"
  figure = Figure(figsize=(8.5, 5.4), layout="constrained")
  axis = figure.subplots()
  points = []
  for member in members:
    measured = member.get("measured_latency_ms")
    x = measured if measured is not None else (member[key] if latency else math.nan)
    points.append((x, member["test_top1"], f"{member['rank']}: {member['arch_string']}"))
    if latency and measured is not None:
      axis.plot([member[key], measured], [member["test_top1"]] * 2, c=GREY, lw=0.8, zorder=1)
      axis.scatter([member[key]], [member["test_top1"]], s=36, facecolors="none", edgecolors=GREY,
                   zorder=2, label="as the table predicted" if member is members[0] else None)
  _draw_networks(axis, [(x, y) for x, y, _ in points], "retrained pool members (measured)")
  _draw_pool(axis, [], points[:1])
  _label(axis, points)
  if latency:
    _draw_budget(axis, constraint["budget"], constraint["unit"])
  axis.set(xlabel="latency (ms): the exported LiteRT model, measured", ylabel="test top-1",
           title="After retraining: test accuracy against measured latency")
  axis.grid(alpha=0.3)
  _legend_below(figure, axis)
  save(figure, path)


def _draw_networks(axis, points, label, legend=True):
  if not points:
    return
  cost, accuracy = zip(*points)
  axis.scatter(cost, accuracy, s=30, c=NAVY, marker="D", edgecolors="white", linewidths=0.6, zorder=3,
               label=label if legend else None)
  front = [points[i] for i in front_lib.non_dominated(points)]
  if front:
    x, y = zip(*front)
    axis.step(x, y, where="post", c=RED, lw=1.4, zorder=4, label="front (non-dominated)" if legend else None)
    axis.scatter(x, y, s=40, facecolors="none", edgecolors=RED, linewidths=1.2, zorder=4)


def _draw_pool(axis, pool, chosen, legend=True):
  if pool:
    cost, potential, _ = zip(*pool)
    axis.scatter(cost, potential, s=110, facecolors="none", edgecolors=ORANGE, linewidths=1.8, zorder=5,
                 label="final pool" if legend else None)
  for cost, accuracy, arch in chosen:
    axis.scatter([cost], [accuracy], marker="*", s=260, c="gold", edgecolors="k", linewidths=0.8, zorder=6,
                 label=f"chosen {arch}" if legend else None)


def _label(axis, points):
  """Each (cost, accuracy, text) point's text beside it: on its right (its left near the right edge),
  moved down a line while it would overlap a text already placed."""
  axis.margins(x=0.08, y=0.08)
  low, high = axis.get_xlim()
  placed = []  # (x, y, width) in points (1/72 inch) of the texts placed
  scale = axis.figure.dpi / 72
  for cost, accuracy, text in sorted(points, key=lambda p: -p[1]):
    x, y = (value / scale for value in axis.transData.transform((cost, accuracy)))
    left, width = cost > low + 0.8 * (high - low), 4.2 * len(text)
    start = x - 7 - width if left else x + 7
    offset = -10
    while any(abs(y + offset - py) < 9 and start < px + pw and px < start + width for px, py, pw in placed):
      offset -= 9
    placed.append((start, y + offset, width))
    axis.annotate(text, (cost, accuracy), xytext=(-7 if left else 7, offset), textcoords="offset points",
                  ha="right" if left else "left", fontsize=7, color="#333333", zorder=7)


def _draw_budget(axis, budget, unit, legend=True):
  """The budget line, and the infeasible side shaded up to the axis' edge (after the points)."""
  axis.axvline(budget, c="k", ls="--", lw=1.2, zorder=2,
               label=f"budget {quantity(budget, unit)}" if legend else None)
  low, high = axis.get_xlim()
  if high > budget:
    axis.axvspan(budget, high, color=RED, alpha=0.06, zorder=0, label="over the budget" if legend else None)
  axis.set_xlim(low, high)


def _legend_below(figure, axis, columns=4):
  """The legend of `axis` below the figure's axes, where it hides no point."""
  figure.legend(*axis.get_legend_handles_labels(), loc="outside lower center", ncol=columns, fontsize=8,
                frameon=False)


# The latency table --------------------------------------------------------------------------------


def plot_latency_validation(validation: dict, path: str, exported=None) -> None:
  """Measured against predicted latency of the table's calibration networks (which the fit saw),
  with the 10% band, and the exported chosen network (which it did not) when `exported` is given:
  (arch string, predicted ms, measured ms)."""
  networks = validation.get("networks", [])
  figure = Figure(figsize=(6.2, 5.2), layout="constrained")
  axis = figure.subplots()
  values = [n["predicted_ms"] for n in networks] + [n["measured_ms"] for n in networks]
  if exported:
    values += list(exported[1:])
  low, high = (min(values) * 0.9, max(values) * 1.1) if values else (0.0, 1.0)
  line = [low, high]
  axis.plot(line, line, c="k", lw=1, label="measured = predicted")
  axis.fill_between(line, [v * 0.9 for v in line], [v * 1.1 for v in line], color=BLUE, alpha=0.1,
                    label="within 10%")
  if networks:
    axis.scatter([n["predicted_ms"] for n in networks], [n["measured_ms"] for n in networks], s=22,
                 c=BLUE, zorder=3, label=f"calibration networks ({len(networks)}, fitted)")
  if exported:
    axis.scatter([exported[1]], [exported[2]], marker="*", s=260, c="gold", edgecolors="k", zorder=4,
                 label=f"exported {exported[0]} (not fitted)")
  rmse = validation.get("cv_rmse_ms")
  detail = f"{validation.get('model')} fit" + (f", CV RMSE {rmse:.3g} ms" if rmse is not None else "")
  axis.set(xlim=line, ylim=line, xlabel="predicted by the table (ms)", ylabel="measured (ms)",
           title=f"Latency table against whole networks\n({detail})")
  axis.grid(alpha=0.3)
  _legend_below(figure, axis, columns=2)
  save(figure, path)
