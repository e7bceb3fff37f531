"""The search's hard constraint: a `latency.Constraint` with its budget and its completion sampler.

Costs, budgets and exact sampling live in `latency/constraint.py` and `sampling.py`; this adapter adds
what the search needs on top: completions of a candidate (exact or Algorithm 1's rejection), the cost of
pool members, and the figures written to search_result.json.
"""

import os

from pcnas_tf import cost as cost_lib
from pcnas_tf import latency
from pcnas_tf import sampling

BudgetError = sampling.BudgetError


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

  def describe(self, arch):
    counts = cost_lib.arch_cost(arch, self.space, self.input_shape, self.num_classes)
    return {prediction_key(self.kind): self.constraint.predict(arch), "params": counts.params,
            "flops": counts.flops}

  def summary(self):
    return {"kind": self.kind, "unit": self.unit, "prediction_key": prediction_key(self.kind),
            "budget": self.budget, "min": self.low,
            "max": self.high, "feasible_architectures": str(self.sampler.count()), **self.metadata}


def build(space, input_shape, num_classes, config, progress=True) -> SearchConstraint:
  """The constraint a search config asks for; latency tables are built once and reused from the cache."""
  if config.constraint != "latency":
    constraint = latency.make_constraint(config.constraint, space, input_shape=input_shape,
                                         num_classes=num_classes)
    return SearchConstraint(constraint, config.budget, input_shape, num_classes)
  height, _, channels = input_shape
  table = latency.get_or_build_table(
      os.path.expanduser(config.latency_cache_dir), space, config.latency_backend,
      config.latency_batch, height, channels=channels, num_classes=num_classes,
      calibration_archs=config.calibration_archs, seed=config.seed, progress=progress)
  metadata = {"table": {k: table.metadata[k] for k in ("backend", "device", "batch", "resolution")
                        if k in table.metadata}}
  return SearchConstraint(latency.make_constraint("latency", space, table=table), config.budget,
                          input_shape, num_classes, metadata)
