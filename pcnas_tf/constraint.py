"""The hard constraint of a search: an additive cost table (latency, FLOPs or params) and a budget.

The budget is an absolute value in the cost's unit (`12ms`, `45e6`) or a fraction of the way from the
space's cheapest to its most expensive architecture (`0.5`, `50%`), which carries across machines. A
budget below the cheapest architecture is a `BudgetError` that states the minimum.
"""

import re

from pcnas_tf import cost as cost_lib
from pcnas_tf import errors
from pcnas_tf import sampling

BudgetError = sampling.BudgetError
KINDS = ("latency", "flops", "params")
_UNITS = {"latency": "ms", "flops": "FLOPs", "params": "params"}


def parse_budget(text: str, low: float, high: float, unit: str) -> float:
  """Turns `0.4`, `40%`, `12ms`, `12`(>1: absolute) into an absolute budget."""
  text = str(text).strip().lower()
  match = re.fullmatch(r"([0-9.eE+-]+)\s*(%|ms|flops|params)?", text)
  if not match:
    raise errors.UserError(f"Budget {text!r} is not understood; give a fraction of the [min, max] range "
                           f"(0.5 or 50%) or an absolute value in {unit} (e.g. 12{unit}).")
  try:
    value = float(match.group(1))
  except ValueError as error:
    raise errors.UserError(f"Budget {text!r} is not a number.") from error
  suffix = match.group(2)
  if suffix == "%":
    value /= 100.0
  if suffix == "%" or (suffix is None and 0.0 <= value <= 1.0):
    if not 0.0 <= value <= 1.0:
      raise errors.UserError(f"Budget fraction {value:g} must lie between 0 and 1.")
    return low + value * (high - low)
  if value < low:
    raise BudgetError(f"Budget {value:g} {unit} is below the cheapest architecture of the space, "
                      f"{low:g} {unit}; give at least that.")
  return value


class Constraint:
  """A cost table, its budget, and the sampler of feasible completions."""

  def __init__(self, kind, table: sampling.CostTable, budget_text, space, input_shape, num_classes,
               metadata=None):
    self.kind, self.table, self.space = kind, table, space
    self.input_shape, self.num_classes = input_shape, num_classes
    self.unit = _UNITS[kind]
    self.low, self.high = table.cost_range()
    self.budget = parse_budget(budget_text, self.low, self.high, self.unit)
    self.sampler = sampling.FeasibleSampler(table, self.budget)
    self.metadata = metadata or {}

  def completions(self, candidate, n, rng, mode="exact"):
    """`n` completions of `candidate`: uniform among feasible ones, or Algorithm 1's rejection."""
    if mode == "rejection":
      return sampling.sample_rejection(self.table, self.budget, candidate, n, rng)
    if self.sampler.count(candidate) == 0:
      return []
    return self.sampler.sample(candidate, n, rng)

  def cost_of_partial(self, partial):
    """The cost of a full path, or the cheapest completion of a partial one."""
    return self.table.cost_range(partial)[0]

  def describe(self, arch):
    path = self.space.indices(arch)
    counts = cost_lib.arch_cost(arch, self.space, self.input_shape, self.num_classes)
    return {f"predicted_{self.kind}": self.table.predict(path), "params": counts.params,
            "flops": counts.flops}

  def summary(self):
    return {"kind": self.kind, "unit": self.unit, "budget": self.budget, "min": self.low,
            "max": self.high, "feasible_architectures": str(self.sampler.count()), **self.metadata}


def counting_table(space, input_shape, num_classes, kind) -> sampling.CostTable:
  """The exact FLOPs or parameter table of a space (integers, resolution 1)."""
  field = "flops" if kind == "flops" else "params"
  fixed = getattr(cost_lib.fixed_cost(space, input_shape, num_classes), field)
  costs = [[getattr(c, field) for c in layer] for layer in cost_lib.layer_costs(space, input_shape)]
  return sampling.CostTable.from_costs(costs, fixed, resolution=1)


def build(space, input_shape, num_classes, config, work_dir) -> Constraint:
  """The constraint a search config asks for; latency tables are built or reused from the cache."""
  if config.constraint not in KINDS:
    raise errors.UserError(f"Constraint {config.constraint!r} is unknown; allowed: {', '.join(KINDS)}.")
  if config.constraint == "latency":
    table, metadata = _latency_table(space, input_shape, num_classes, config, work_dir)
  else:
    table, metadata = counting_table(space, input_shape, num_classes, config.constraint), {}
  return Constraint(config.constraint, table, config.budget, space, input_shape, num_classes, metadata)


def _latency_table(space, input_shape, num_classes, config, work_dir):
  from pcnas_tf import latency  # pylint: disable=g-import-not-at-top  (TFLite only when needed)
  return latency.search_cost_table(space, input_shape, num_classes, backend=config.latency_backend,
                                   batch=config.latency_batch)
