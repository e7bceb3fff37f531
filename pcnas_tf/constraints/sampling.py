"""Exact uniform sampling of architectures under an additive cost budget (latency, FLOPs or params).

An architecture is handled here as its path: a tuple with the choice index of each mixop. Its cost is
`base + sum_l costs[l][path[l]]`, and it is feasible when that cost is within the budget.

Exactness. Summing floats in a different order can flip a comparison with the budget, so a count, a
sample and a later check could disagree. Every per-choice cost (and the base) is therefore quantised once
to an integer number of `resolution` units (rounded to nearest), and the budget is floored to units.
Feasibility is *defined* on these integer sums: `CostTable.predict` and `FeasibleSampler.is_feasible`
expose that definition, and counts and samples use it too, so no infeasible completion is ever produced.
Integer costs (FLOPs, params) with `resolution=1` are represented without any rounding at all.

Counting. `FeasibleSampler` counts, for every suffix of layers and every remaining slack, how many suffix
paths fit, by dynamic programming over integer cost, storing only the suffix sums that occur (so 1-FLOP
units cost no more than coarse ones). Counts are exact Python ints (numpy object arrays) when the space is
too large for int64, e.g. the 20^21 models of PC-NAS' large space. Sampling draws a
uniform integer below the number of feasible completions and decodes it layer by layer, each choice taking
a share of that range equal to its number of feasible completions: uniform over the feasible set, exactly.
"""

import dataclasses
import math
from typing import Protocol, Sequence

import numpy as np

from pcnas_tf import errors

Path = tuple[int, ...]

# Budgets are floored to units after division; this slack absorbs float error such as 0.3 / 0.1 < 3.
_BUDGET_EPSILON = 1e-9
# Spaces up to this size keep counts in int64; above it counts become exact Python ints.
_INT64_LIMIT = 2**62


class BudgetError(errors.UserError):
  """A cost budget that no architecture (or no completion of a partial model) can meet."""


@dataclasses.dataclass(frozen=True)
class CostTable:
  """An additive cost model, quantised to integer units of `resolution`.

  Attributes:
    units: per layer, the cost of each choice in units.
    base_units: the fixed cost (stem, head) in units.
    resolution: the size of one unit, in the cost's own unit (e.g. 1e-3 ms, or 1 FLOP).
  """
  units: tuple[tuple[int, ...], ...]
  base_units: int = 0
  resolution: float = 1e-3

  @classmethod
  def from_costs(cls, costs: Sequence[Sequence[float]], base: float = 0.0,
                 resolution: float = 1e-3) -> "CostTable":
    """Quantises per-layer, per-choice costs (and the base cost) to units of `resolution`."""
    if not resolution > 0 or not math.isfinite(resolution):
      raise errors.UserError(f"Cost resolution {resolution} must be a finite number > 0.")
    if not costs:
      raise errors.UserError("The cost table has no layers; give one list of per-choice costs per layer.")
    units = []
    for layer, layer_costs in enumerate(costs):
      if len(layer_costs) == 0:
        raise errors.UserError(f"Layer {layer} of the cost table has no choices.")
      if not all(math.isfinite(float(c)) for c in layer_costs):
        raise errors.UserError(f"Layer {layer} of the cost table has a non-finite cost: {list(layer_costs)}.")
      units.append(tuple(int(round(float(c) / resolution)) for c in layer_costs))
    return cls(tuple(units), int(round(float(base) / resolution)), float(resolution))

  @property
  def num_choices(self) -> tuple[int, ...]:
    return tuple(len(layer) for layer in self.units)

  def budget_units(self, budget: float) -> int:
    """The budget in units: the largest integer cost that is still feasible."""
    return math.floor(float(budget) / self.resolution + _BUDGET_EPSILON)

  def predict_units(self, path: Sequence[int]) -> int:
    """The quantised cost of a full path, in units."""
    self.check_prefix(path, full=True)
    return self.base_units + sum(self.units[l][c] for l, c in enumerate(path))

  def predict(self, path: Sequence[int]) -> float:
    """The quantised cost of a full path: the value feasibility is decided on."""
    return self.predict_units(path) * self.resolution

  def cost_range(self, prefix: Sequence[int] = ()) -> tuple[float, float]:
    """The cheapest and dearest total cost over all completions of `prefix` (the space when empty)."""
    low, high = self.cost_range_units(prefix)
    return low * self.resolution, high * self.resolution

  def cost_range_units(self, prefix: Sequence[int] = ()) -> tuple[int, int]:
    self.check_prefix(prefix)
    fixed = self.base_units + sum(self.units[l][c] for l, c in enumerate(prefix))
    rest = self.units[len(prefix):]
    return fixed + sum(min(layer) for layer in rest), fixed + sum(max(layer) for layer in rest)

  def check_prefix(self, prefix: Sequence[int], full: bool = False) -> None:
    """Raises a UserError unless `prefix` is a valid partial (or, with `full`, complete) path."""
    if len(prefix) > len(self.units) or (full and len(prefix) != len(self.units)):
      wanted = f"exactly {len(self.units)}" if full else f"at most {len(self.units)}"
      raise errors.UserError(f"Path {tuple(prefix)} has {len(prefix)} choices; this space needs {wanted}.")
    for layer, choice in enumerate(prefix):
      if not 0 <= choice < len(self.units[layer]):
        raise errors.UserError(f"Choice {choice} at layer {layer} is out of range "
                               f"0..{len(self.units[layer]) - 1}.")


class Sampler(Protocol):
  """What the searches need from a feasible-set sampler."""
  num_choices: tuple[int, ...]

  def is_feasible(self, path: Sequence[int]) -> bool: ...

  def count(self, prefix: Sequence[int] = ()) -> int: ...

  def sample(self, prefix: Sequence[int], n: int, rng: np.random.Generator) -> list[Path]: ...


class FeasibleSampler:
  """Counts and uniformly samples the feasible completions of partial paths under one budget.

  The tables are built once per (cost table, budget); each count is then a lookup and each sample costs
  O(layers x choices).
  """

  def __init__(self, table: CostTable, budget: float):
    self.table = table
    self.budget = float(budget)
    self.num_choices = table.num_choices
    cheapest, _ = table.cost_range_units()
    self._budget_units = table.budget_units(budget)
    if cheapest > self._budget_units:
      raise BudgetError(f"Budget {budget:g} is below the cheapest architecture's cost "
                        f"{cheapest * table.resolution:g}; give a budget of at least that.")
    # Costs above each layer's cheapest choice: the DP then only spans the slack above the minimum.
    self._floors = tuple(min(layer) for layer in table.units)
    self._extras = tuple(tuple(u - f for u in layer) for layer, f in zip(table.units, self._floors))
    self._slack = self._budget_units - cheapest
    self._counts = _suffix_counts(self._extras, self._slack)

  def is_feasible(self, path: Sequence[int]) -> bool:
    """Whether a full path's quantised cost is within the budget."""
    return self.table.predict_units(path) <= self._budget_units

  def count(self, prefix: Sequence[int] = ()) -> int:
    """The exact number of feasible completions of `prefix` (of the whole space when empty)."""
    self.table.check_prefix(prefix)
    return self._count_at(len(prefix), self._slack_after(prefix))

  def sample(self, prefix: Sequence[int] = (), n: int = 1,
             rng: np.random.Generator | None = None) -> list[Path]:
    """Draws `n` completions of `prefix` independently and uniformly among its feasible ones.

    Raises:
      BudgetError: when `prefix` has no feasible completion.
    """
    rng = rng if rng is not None else np.random.default_rng()
    total = self.count(prefix)
    if total == 0:
      low, _ = self.table.cost_range(prefix)
      raise BudgetError(f"Partial model {tuple(prefix)} has no completion within budget {self.budget:g}; "
                        f"its cheapest completion costs {low:g}.")
    return [self._unrank(tuple(prefix), _uniform_below(total, rng)) for _ in range(n)]

  def _slack_after(self, prefix: Sequence[int]) -> int:
    return self._slack - sum(self._extras[l][c] for l, c in enumerate(prefix))

  def _count_at(self, layer: int, slack: int) -> int:
    values, cumulative = self._counts[layer]
    position = int(np.searchsorted(values, slack, side="right"))
    return int(cumulative[position - 1]) if position else 0

  def _unrank(self, prefix: Path, rank: int) -> Path:
    """The `rank`-th feasible completion of `prefix`, ordering completions by choice index per layer."""
    path, slack = list(prefix), self._slack_after(prefix)
    for layer in range(len(prefix), len(self._extras)):
      for choice, extra in enumerate(self._extras[layer]):
        below = self._count_at(layer + 1, slack - extra)
        if rank < below:
          path.append(choice)
          slack -= extra
          break
        rank -= below
    return tuple(path)


def _suffix_counts(extras: Sequence[Sequence[int]], width: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """Per layer l, the reachable extra costs r <= width of layers l.. and the paths costing at most r.

  Sparse over reachable sums, so a fine resolution (1 FLOP) costs no more than the distinct sums need.
  """
  size = math.prod(len(layer) for layer in extras)
  dtype = np.int64 if size < _INT64_LIMIT else object
  # Per layer: the distinct suffix sums and how many suffix paths cost exactly each, built back to front.
  sums, counts = [np.zeros(1, dtype=np.int64)], [np.ones(1, dtype=dtype)]
  for layer in reversed(extras):
    candidates = np.concatenate([sums[0] + extra for extra in layer])
    paths = np.concatenate([counts[0]] * len(layer))
    keep = candidates <= width
    values, inverse = np.unique(candidates[keep], return_inverse=True)
    merged = np.zeros(len(values), dtype=dtype)
    np.add.at(merged, inverse, paths[keep])
    sums.insert(0, values)
    counts.insert(0, merged)
  return [(values, np.cumsum(exact)) for values, exact in zip(sums, counts)]


def _uniform_below(n: int, rng: np.random.Generator) -> int:
  """A uniform integer in [0, n), exact for Python ints beyond int64."""
  if n <= _INT64_LIMIT:
    return int(rng.integers(n))
  bits = n.bit_length()
  words = -(-bits // 32)
  while True:  # Accepts with probability > 1/2 per try, as Python's own randbelow does.
    value = 0
    for word in rng.integers(0, 2**32, size=words, dtype=np.uint64):
      value = (value << 32) | int(word)
    value >>= words * 32 - bits
    if value < n:
      return value


def _as_table(costs: "CostTable | Sequence[Sequence[float]]") -> CostTable:
  return costs if isinstance(costs, CostTable) else CostTable.from_costs(costs)


def cost_range(costs, prefix: Sequence[int] = ()) -> tuple[float, float]:
  """The min and max total cost of the completions of `prefix`; `costs` is a CostTable or nested lists."""
  return _as_table(costs).cost_range(prefix)


def count_feasible(costs, budget: float, prefix: Sequence[int] = ()) -> int:
  """The exact number of completions of `prefix` whose quantised cost is within `budget`."""
  return FeasibleSampler(_as_table(costs), budget).count(prefix)


def sample_feasible(costs, budget: float, prefix: Sequence[int] = (), n: int = 1,
                    rng: np.random.Generator | None = None) -> list[Path]:
  """Draws `n` completions of `prefix` uniformly among the feasible ones, without rejection."""
  return FeasibleSampler(_as_table(costs), budget).sample(prefix, n, rng)


def sample_rejection(costs, budget: float, prefix: Sequence[int] = (), n: int = 1,
                     rng: np.random.Generator | None = None) -> list[Path]:
  """The paper's Algorithm 1: `n` uniform completions of `prefix`, infeasible ones dropped.

  Returns between 0 and `n` paths, so callers see how many evaluations the constraint wasted.
  """
  table, rng = _as_table(costs), rng if rng is not None else np.random.default_rng()
  table.check_prefix(prefix)
  limit = table.budget_units(budget)
  kept = []
  for _ in range(n):
    path = tuple(prefix) + tuple(int(rng.integers(k)) for k in table.num_choices[len(prefix):])
    if table.predict_units(path) <= limit:
      kept.append(path)
  return kept
