"""Ground-truth tables: every network of a sample trained alone, the yardstick search quality is judged on.

Two sources, one interface (`GroundTruth`):
  * a table this project builds (`ground_truth_build.py`): the macro space on Fashion-MNIST, each network
    trained alone under one fixed schedule, a sample of them with a second seed (the noise ceiling);
  * NAS-Bench-Macro's CIFAR-10 table (`from_nasbench_macro`), all 6,561 paths, three seeds each.

Networks are counted once: paths that differ only by where an Identity sits after a stage's first layer
are one network (`nasbench_macro.canonical_key`), and `GroundTruth.entry` maps any path to its network.
"""

import dataclasses
import os
from typing import Sequence

import numpy as np
from scipy import stats

from pcnas_tf import errors
from pcnas_tf import files
from pcnas_tf.space import nasbench_macro
from pcnas_tf.space import search_space as space_lib

FORMAT = "pcnas_tf.ground_truth/1"


class GroundTruthError(errors.UserError):
  """A ground-truth table that is unreadable or was built for something else."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One network's figures. Accuracies in % (NAS-Bench-Macro's unit); latencies in ms or None.

  Attributes:
    accuracy: mean test top-1 over the seeds trained.
    seeds: test top-1 per seed (seed order).
    validation: mean validation top-1 (None where the source has no validation split).
  """
  accuracy: float
  seeds: tuple[float, ...]
  flops: int
  params: int
  validation: float | None = None
  predicted_latency_ms: float | None = None
  measured_latency_ms: float | None = None
  drawn: bool = True  # one of the uniform draw; False: added on demand (chosen by a search, say)


class GroundTruth:
  """Networks of a space with their stand-alone accuracy, keyed by canonical path.

  Attributes:
    name: where the figures come from.
    space: the `SearchSpace` whose paths key the table.
    entries: canonical path (choice indices) -> Entry.
  """

  def __init__(self, name: str, space, entries: dict, steps: int | None = None):
    self.name, self.space, self.entries = name, space, entries
    self.steps = steps  # training steps per network (None where the source does not say)

  def canonical(self, path: Sequence[int]) -> tuple[int, ...]:
    key = nasbench_macro.canonical_key("".join(map(str, path)))
    return tuple(int(c) for c in key)

  def entry(self, path: Sequence[int]) -> Entry | None:
    """The figures of the network `path` denotes, or None if it is not in the table."""
    return self.entries.get(self.canonical(path))

  def paths(self, drawn_only: bool = False) -> list[tuple[int, ...]]:
    """The networks' canonical paths; `drawn_only`: those of the uniform draw (a uniform sample of
    the space, which networks added on demand, chosen by searches, are not)."""
    return sorted(p for p, e in self.entries.items() if e.drawn or not drawn_only)

  def accuracies(self, paths=None) -> np.ndarray:
    return np.array([self.entry(p).accuracy for p in (paths or self.paths())])


def from_nasbench_macro(path=nasbench_macro.DEFAULT_PATH) -> GroundTruth:
  """NAS-Bench-Macro's CIFAR-10 table (6,561 paths, 3,969 networks) as a GroundTruth."""
  raw = files.read_json(path, "NAS-Bench-Macro table", GroundTruthError)
  space = space_lib.macro_space()
  entries = {}
  for key, value in raw.items():
    canonical = tuple(int(c) for c in nasbench_macro.canonical_key(key))
    entries.setdefault(canonical, Entry(float(value["mean_acc"]), tuple(map(float, value["test_acc"])),
                                        int(value["flops"]), int(value["params"])))
  return GroundTruth(f"nas-bench-macro ({os.path.basename(str(path))})", space, entries)


def load(path: str) -> GroundTruth:
  """A table of this project's format (finished or not) as a GroundTruth of its trained networks."""
  state = read_state(path)
  space = space_lib.macro_space(state["width"])
  entries = {}
  for key, network in state["networks"].items():
    seeds = [network["seeds"][s]["test_top1"] * 100 for s in sorted(network["seeds"], key=int)]
    if not seeds:
      continue
    validation = [network["seeds"][s]["validation_top1"] * 100 for s in network["seeds"]]
    entries[tuple(int(c) for c in key)] = Entry(
        float(np.mean(seeds)), tuple(seeds), int(network["flops"]), int(network["params"]),
        float(np.mean(validation)), network.get("predicted_latency_ms"),
        network.get("measured_latency_ms"), network.get("why", "drawn") == "drawn")
  schedule = state["schedule"]
  return GroundTruth(f"{state['data']['dataset']} ({os.path.basename(path)})", space, entries,
                     schedule["epochs"] * schedule["steps_per_epoch"])


def load_any(source: str) -> GroundTruth:
  """`nasbench_macro` (the CIFAR-10 table) or the path of a table this project built."""
  return from_nasbench_macro() if source == "nasbench_macro" else load(source)


# Statistics -----------------------------------------------------------------------------------------

def kendall(a, b) -> float:
  return float(stats.kendalltau(a, b).statistic)


def top_fraction(values, fraction: float = 0.1) -> np.ndarray:
  """Indices of the best `fraction` of `values` (at least two)."""
  count = max(2, int(round(len(values) * fraction)))
  return np.argsort(values)[::-1][:count]


def noise_ceiling(truth: GroundTruth, fraction: float = 0.1) -> dict:
  """Seed-to-seed agreement over the networks trained with two seeds (seeds 0 and 1).

  Returns `networks`, `kendall`, `spearman`, and `kendall_top` over the best `fraction` of them
  (by their mean accuracy); NaN where fewer than 3 networks have two seeds.
  """
  pairs = np.array([e.seeds[:2] for e in truth.entries.values() if len(e.seeds) >= 2])
  if len(pairs) < 3:
    return {"networks": len(pairs), "kendall": float("nan"), "spearman": float("nan"),
            "kendall_top": float("nan")}
  top = top_fraction(pairs.mean(axis=1), fraction)
  return {"networks": len(pairs), "kendall": kendall(pairs[:, 0], pairs[:, 1]),
          "spearman": float(stats.spearmanr(pairs[:, 0], pairs[:, 1]).statistic),
          "kendall_top": kendall(pairs[top, 0], pairs[top, 1]) if len(top) >= 3 else float("nan")}


def agreement(a: GroundTruth, b: GroundTruth, fraction: float = 0.1) -> dict:
  """How two tables of one space rank the networks both hold (say 14x14 against 28x28): Kendall,
  Spearman and Kendall within `a`'s top `fraction`, over their mean accuracies."""
  common = sorted(set(a.entries) & set(b.entries))
  if len(common) < 3:
    return {"networks": len(common), "kendall": float("nan"), "spearman": float("nan"),
            "kendall_top": float("nan")}
  x, y = a.accuracies(common), b.accuracies(common)
  top = top_fraction(x, fraction)
  return {"networks": len(common), "kendall": kendall(x, y),
          "spearman": float(stats.spearmanr(x, y).statistic),
          "kendall_top": kendall(x[top], y[top]) if len(top) >= 3 else float("nan")}


def read_state(path: str) -> dict:
  """The raw JSON state of a table this project built; raises GroundTruthError if it is not one."""
  state = files.read_json(path, "ground-truth table", GroundTruthError)
  if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(
      state.get("networks"), dict):
    raise GroundTruthError(f"Ground-truth table {path} is not a {FORMAT} file.")
  return state
