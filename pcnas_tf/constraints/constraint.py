"""Constraints on architectures: latency from a lookup table, or FLOPs or parameters from `cost.py`.

All three are additive over layers, so each becomes a `sampling.CostTable` and shares one interface:
predict an architecture, the min and max over the space or over a partial model's completions, a
feasible sampler, and budgets given absolutely or as a fraction between the space's min and max.

  constraint = make_constraint("latency", space, table=table)
  budget = constraint.resolve_budget("40%")     # or "12ms", or 0.4
  sampler = constraint.sampler(budget)          # sampling.FeasibleSampler: exact uniform sampling
"""

import dataclasses
import os
import re
from typing import Sequence

import numpy as np

from pcnas_tf.space import cost
from pcnas_tf import errors
from pcnas_tf.constraints import sampling
from pcnas_tf.constraints import latency_table as table_lib

KINDS = ("latency", "flops", "params")
UNITS = {"latency": "ms", "flops": "FLOPs", "params": "params"}
# Latency is quantised to 1 microsecond for exact sampling; FLOPs and params are integers already.
LATENCY_RESOLUTION_MS = 1e-3
_SUFFIXES = {"latency": {"ms": 1.0}, "flops": {"": 1, "k": 1e3, "m": 1e6, "g": 1e9},
             "params": {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}}
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(%|[a-z]*)\s*$", re.IGNORECASE)


def predict(arch: Sequence[str], table: table_lib.LatencyTable, calibrated: bool = True) -> float:
  """The table's latency of `arch` in ms: base plus one entry per layer (no quantisation)."""
  ops_ms, base_ms = table.costs(calibrated)
  if len(arch) != len(table.choices):
    raise errors.UserError(f"Architecture has {len(arch)} operators; the table has "
                           f"{len(table.choices)} layers.")
  total = base_ms
  for index, (op, choices) in enumerate(zip(arch, table.choices)):
    if op not in choices:
      raise errors.UserError(f"Operator {op!r} is not in the table at layer {index}; allowed: "
                             f"{', '.join(choices)}.")
    total += ops_ms[index][choices.index(op)]
  return total


def latency_cost_table(table: table_lib.LatencyTable, calibrated: bool = True) -> sampling.CostTable:
  ops_ms, base_ms = table.costs(calibrated)
  return sampling.CostTable.from_costs(ops_ms, base_ms, LATENCY_RESOLUTION_MS)


@dataclasses.dataclass(frozen=True)
class Constraint:
  """An additive constraint over a space's architectures.

  Attributes:
    kind: latency, flops or params.
    space: the `SearchSpace`.
    costs: the quantised per-layer costs; feasibility is decided on these.
  """
  kind: str
  space: object
  costs: sampling.CostTable

  @property
  def unit(self) -> str:
    return UNITS[self.kind]

  def predict(self, arch: Sequence[str]) -> float:
    """The (quantised) cost of a whole architecture, the value budgets are compared with."""
    return self.costs.predict(self.space.indices(arch))

  def range(self, partial_arch: Sequence[str] = ()) -> tuple[float, float]:
    """The min and max cost over all completions of `partial_arch` (the whole space when empty)."""
    return sampling.cost_range(self.costs, _partial_path(self.space, partial_arch))

  def resolve_budget(self, spec: str | float) -> float:
    return resolve_budget(spec, self)

  def sampler(self, budget: float) -> sampling.FeasibleSampler:
    return sampling.FeasibleSampler(self.costs, budget)


def _partial_path(space, partial_arch):
  """Choice indices of a partial architecture, with the space's error for a bad operator."""
  if len(partial_arch) > space.num_layers:
    raise errors.UserError(f"Partial model has {len(partial_arch)} operators; the space has "
                           f"{space.num_layers} layers.")
  padded = tuple(partial_arch) + space.arch_from_indices([0] * space.num_layers)[len(partial_arch):]
  return space.indices(padded)[:len(partial_arch)]


def make_constraint(kind: str, space, table: table_lib.LatencyTable | None = None,
                    input_shape: Sequence[int] | None = None, num_classes: int | None = None,
                    calibrated: bool = True) -> Constraint:
  """A latency constraint (needs `table`) or a FLOPs / params one (needs input shape and classes).

  Raises:
    UserError: unknown kind, missing inputs, or a table built for another space.
  """
  if kind not in KINDS:
    raise errors.UserError(f"Unknown constraint {kind!r}; allowed: {', '.join(KINDS)}.")
  if kind == "latency":
    if table is None:
      raise errors.UserError("A latency constraint needs a latency table.")
    if table.metadata["space_fingerprint"] != space.fingerprint():
      raise table_lib.TableError(f"The latency table was built for space {table.metadata['space']!r} "
                                 f"({table.metadata['space_fingerprint']}), not this {space.name!r} "
                                 f"({space.fingerprint()}).")
    return Constraint(kind, space, latency_cost_table(table, calibrated))
  if input_shape is None or num_classes is None:
    raise errors.UserError(f"A {kind} constraint needs the input shape and the number of classes.")
  layer = cost.layer_costs(space, tuple(input_shape))
  fixed = cost.fixed_cost(space, tuple(input_shape), num_classes)
  rows = [[getattr(c, kind) for c in row] for row in layer]
  return Constraint(kind, space, sampling.CostTable.from_costs(rows, getattr(fixed, kind), 1))


def resolve_budget(spec: str | float, constraint: Constraint) -> float:
  """A budget in the constraint's unit from "12ms", "300M" (FLOPs), "40%" or a fraction like 0.4.

  A fraction f in [0, 1] (or a percentage) means min + f * (max - min) over the space, which carries
  over between machines; an absolute value needs its unit for latency ("12ms"), so "12" is not
  mistaken for a fraction.

  Raises:
    UserError: unparseable, or a fraction outside [0, 1].
    sampling.BudgetError: below the cheapest architecture (the message states that minimum).
  """
  low, high = constraint.range()
  budget = _parse_budget(spec, constraint.kind, low, high)
  if budget < low:
    raise sampling.BudgetError(f"Budget {spec!r} ({budget:g} {constraint.unit}) is below the minimum "
                               f"achievable {constraint.kind} of this space, {low:g} {constraint.unit}.")
  return budget


def check_budget(spec: str | float, kind: str) -> None:
  """Raises `UserError` if `spec` is no budget of a `kind` constraint; needs no table or range.

  Whether the budget is above the space's cheapest architecture is known only once the costs are
  (`resolve_budget`); its form can be checked before any latency table is built.
  """
  _parse_budget(spec, kind, 0.0, 1.0)


def _parse_budget(spec, kind, low, high) -> float:
  if isinstance(spec, (int, float)) and not isinstance(spec, bool):
    return _fraction(float(spec), spec, kind, low, high)
  match = _BUDGET.match(str(spec))
  if not match:
    raise errors.UserError(_budget_help(spec, kind))
  number, suffix = float(match.group(1)), match.group(2).lower()
  if suffix == "%":
    return _fraction(number / 100, spec, kind, low, high)
  if suffix == "" and (number <= 1 or kind == "latency"):  # a latency needs its unit: 1.5 is a fraction
    return _fraction(number, spec, kind, low, high)
  if suffix not in _SUFFIXES[kind]:
    raise errors.UserError(_budget_help(spec, kind))
  return number * _SUFFIXES[kind][suffix]


def _fraction(fraction, spec, kind, low, high) -> float:
  if not 0 <= fraction <= 1:
    raise errors.UserError(f"Budget {spec!r} is outside the fractions 0 to 1 (0% to 100%) of the "
                           f"space's range; {_forms(kind)}.")
  return low + fraction * (high - low)


def _forms(kind) -> str:
  absolute = "'12ms'" if kind == "latency" else "'300M' or 300000000"
  return (f"give a fraction between the space's min and max such as 0.4 or '40%', or an absolute value "
          f"such as {absolute}")


def _budget_help(spec, kind) -> str:
  return f"Cannot read {kind} budget {spec!r}; {_forms(kind)}."


# The search's constraint: a budget resolved against the space, and completions of candidates ----------


def prediction_key(kind: str) -> str:
  """The result field of a constraint's prediction: `predicted_latency_ms`, `predicted_flops`, ..."""
  return "predicted_latency_ms" if kind == "latency" else f"predicted_{kind}"


class SearchConstraint:
  """A constraint, its resolved budget and the sampler of feasible completions."""

  def __init__(self, constraint, budget_spec, input_shape, num_classes, metadata=None):
    self.constraint, self.kind, self.unit = constraint, constraint.kind, constraint.unit
    self.space, self.input_shape, self.num_classes = constraint.space, input_shape, num_classes
    self.low, self.high = constraint.range()
    self.budget = constraint.resolve_budget(budget_spec)
    self.sampler = constraint.sampler(self.budget)
    self.metadata = metadata or {}
    self._cost_rows = None

  def completions(self, candidate, n, rng, mode="exact"):
    """`n` completions of `candidate`: uniform among feasible ones, or Algorithm 1's rejection."""
    if mode == "rejection":
      return sampling.sample_rejection(self.constraint.costs, self.budget, candidate, n, rng)
    if self.sampler.count(candidate) == 0:
      return []
    return self.sampler.sample(candidate, n, rng)

  def cost_of_partial(self, partial):
    """The cost of a full path, or of the cheapest completion of a partial one."""
    return sampling.cost_range(self.constraint.costs, partial)[0]

  def mean_costs(self, paths) -> dict:
    """The mean predicted cost, params and FLOPs of full `paths` (choice indices); {} for no paths.

    A candidate's potential is the mean accuracy of its sampled completions: these are the means of
    the same networks' costs, the candidate's place on an accuracy-cost plot.
    """
    if not len(paths):
      return {}
    if self._cost_rows is None:  # the per-layer tables, once: a search calls this per candidate
      counts = cost.layer_costs(self.space, tuple(self.input_shape))
      fixed = cost.fixed_cost(self.space, tuple(self.input_shape), self.num_classes)
      units = self.constraint.costs
      self._cost_rows = {prediction_key(self.kind): (_padded(units.units), units.base_units,
                                                     units.resolution)}
      for kind in ("params", "flops"):
        self._cost_rows[kind] = (_padded([[getattr(c, kind) for c in row] for row in counts]),
                                 getattr(fixed, kind), 1)
    paths = np.asarray(paths, np.int64)
    layers = np.arange(paths.shape[1])
    return {name: float(np.mean(rows[layers, paths].sum(axis=1) + base)) * scale
            for name, (rows, base, scale) in self._cost_rows.items()}

  def describe(self, arch):
    counts = cost.arch_cost(arch, self.space, self.input_shape, self.num_classes)
    return {prediction_key(self.kind): self.constraint.predict(arch), "params": counts.params,
            "flops": counts.flops}

  def budget_meaning(self) -> str:
    """One sentence on what the budget admits, for the user: all, only the cheapest, or how many."""
    feasible, total = int(self.sampler.count()), int(np.prod([len(layer.choices)
                                                                for layer in self.space.layers]))
    budget = f"Budget {self.budget:.6g} {self.unit}"
    if self.budget >= self.high:
      return (f"{budget} is at or above the space's most expensive architecture ({self.high:.6g} "
              f"{self.unit}): it admits all {total} paths, so the constraint does nothing.")
    if feasible <= 1 or self.budget <= self.low:
      return (f"{budget} admits only the space's cheapest architecture ({self.low:.6g} {self.unit}): "
              f"the search has nothing to choose.")
    return (f"{budget} admits {feasible} of {total} paths ({100 * feasible / total:.3g}%; the space "
            f"spans {self.low:.6g} to {self.high:.6g} {self.unit}).")

  def summary(self):
    return {"kind": self.kind, "unit": self.unit, "prediction_key": prediction_key(self.kind),
            "budget": self.budget, "min": self.low,
            "max": self.high, "feasible_architectures": str(self.sampler.count()), **self.metadata}


def _padded(rows) -> np.ndarray:
  """Per-layer cost lists as one (layers x most choices) array, zeros where a layer has fewer."""
  array = np.zeros((len(rows), max(len(row) for row in rows)))
  for layer, row in enumerate(rows):
    array[layer, :len(row)] = row
  return array


def table_validation(table: table_lib.LatencyTable, space) -> dict:
  """How well a latency table fits whole networks: its calibration model, cross-validated error, and
  each calibration network's measured and predicted latency (`latency_table.calibration_networks`)."""
  fit = table.calibration
  return {"model": fit.get("model"), "cv_rmse_ms": fit.get("cv_rmse_ms"), "scale": fit.get("scale"),
          "networks": table_lib.calibration_networks(table, space)}


def build(space, input_shape, num_classes, config, progress=True) -> SearchConstraint:
  """The constraint a search config asks for; latency tables are built once and reused from the cache."""
  if config.constraint != "latency":
    return SearchConstraint(make_constraint(config.constraint, space, input_shape=input_shape,
                                            num_classes=num_classes), config.budget, input_shape, num_classes)
  height, _, channels = input_shape
  table = table_lib.get_or_build_table(
      os.path.expanduser(config.latency_cache_dir), space, config.latency_backend,
      config.latency_batch, height, channels=channels, num_classes=num_classes,
      calibration_archs=config.calibration_archs, seed=config.seed, progress=progress)
  metadata = {"table": {**{k: table.metadata[k] for k in ("backend", "device", "batch", "resolution")
                          if k in table.metadata}, "validation": table_validation(table, space)}}
  return SearchConstraint(make_constraint("latency", space, table=table), config.budget,
                          input_shape, num_classes, metadata)
