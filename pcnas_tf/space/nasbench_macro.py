"""NAS-Bench-Macro (CIFAR-10): a ground-truth table of all 6,561 architectures of the macro space.

The table (see `shared/benchmarks/nas-bench-macro/README.md`) maps each compact arch string of
`space.macro_space()` to the mean test accuracy of three stand-alone trainings, its FLOPs and params.
It is read from disk only; nothing is ever downloaded.

FLOPs are additive, exactly. Fitting `flops = base + sum_l cost[l][op_l]` on the table leaves no residual
(all values are integers), so `flops_costs` is that model as a `sampling.CostTable` with resolution 1:
feasibility under a FLOPs budget is the table's true FLOPs, and `sampling.FeasibleSampler` counts and
samples it exactly. Loading re-checks additivity on every entry and refuses a table where it fails.

Duplicates: archs that differ only by where an Identity sits after the first layer of a stage are the
same network and share one entry (3,969 distinct networks). `canonical_key` maps a key to its network,
for statistics that should count each network once.
"""

import dataclasses
import json
import pathlib
from typing import Sequence

from pcnas_tf import errors
from pcnas_tf.constraints import sampling
from pcnas_tf.space import search_space as space_lib

DEFAULT_PATH = (pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks" /
                "nas-bench-macro" / "nas-bench-macro_cifar10.json")
# Layers per stage; the first layer of each stage changes stride and channels, so its Identity is real.
_STAGE_LENGTHS = (2, 3, 3)


@dataclasses.dataclass(frozen=True)
class Entry:
  """One architecture's figures: mean test accuracy (%), FLOPs and params."""
  mean_acc: float
  flops: int
  params: int


class MacroBench:
  """The loaded table, keyed by path (choice indices of `space`).

  Attributes:
    space: `space.macro_space()`, whose compact strings are the table's keys.
    entries: path -> Entry, for all 6,561 paths.
    flops_costs: the exact additive FLOPs model, resolution 1 FLOP.
  """

  def __init__(self, raw: dict, source: str):
    self.space = space_lib.macro_space()
    self.entries = {}
    for key, value in raw.items():
      path = self.space.indices(self.space.parse_arch(key))
      self.entries[path] = Entry(float(value["mean_acc"]), int(value["flops"]), int(value["params"]))
    if len(self.entries) != self.space.size():
      raise errors.UserError(f"{source} has {len(self.entries)} architectures; the macro space has "
                             f"{self.space.size()}.")
    flops = {p: e.flops for p, e in self.entries.items()}
    self.flops_costs = _additive_costs(flops, [len(l.choices) for l in self.space.layers], source)

  def accuracy(self, path: Sequence[int]) -> float:
    return self.entries[tuple(path)].mean_acc

  def flops(self, path: Sequence[int]) -> int:
    return self.entries[tuple(path)].flops

  def key(self, path: Sequence[int]) -> str:
    return self.space.arch_to_string(self.space.arch_from_indices(path))


def load(path: str | pathlib.Path | None = None) -> MacroBench:
  """Loads the table from `path` (default: the shared copy beside the repository).

  Raises:
    UserError: when the file is missing, is not the expected JSON, or its FLOPs are not additive.
  """
  path = pathlib.Path(path) if path is not None else DEFAULT_PATH
  try:
    with open(path) as f:
      raw = json.load(f)
    return MacroBench(raw, str(path))
  except OSError as error:
    raise errors.UserError(f"Cannot read the NAS-Bench-Macro table {str(path)!r}: {error.strerror}; "
                           f"pass the path of nas-bench-macro_cifar10.json.") from error
  except json.JSONDecodeError as error:
    raise errors.UserError(f"NAS-Bench-Macro table {str(path)!r} is not valid JSON: {error}.") from error
  except (KeyError, TypeError, AttributeError) as error:
    raise errors.UserError(f"NAS-Bench-Macro table {str(path)!r} has a malformed entry: {error!r}; "
                           f"expected {{arch: {{mean_acc, flops, params, ...}}}}.") from error


def _additive_costs(values: dict, num_choices: Sequence[int], source: str) -> sampling.CostTable:
  """The per-(layer, op) costs that reproduce every value exactly, read off one-op changes of path 0."""
  zero = (0,) * len(num_choices)
  base = values[zero]
  costs = [[values[zero[:l] + (c,) + zero[l + 1:]] - base for c in range(count)]
           for l, count in enumerate(num_choices)]
  table = sampling.CostTable.from_costs(costs, base=base, resolution=1)
  for path, value in values.items():
    if table.predict_units(path) != value:
      raise errors.UserError(f"FLOPs in {source} are not additive over layers (arch {path}: "
                             f"{value} vs {table.predict_units(path)}); this loader needs additive FLOPs.")
  return table


def canonical_key(key: str) -> str:
  """The key of the network `key` denotes: Identities after a stage's first layer moved to its end."""
  parts, start = [], 0
  for length in _STAGE_LENGTHS:
    stage = key[start:start + length]
    rest = "".join(c for c in stage[1:] if c != "0")
    parts.append(stage[0] + rest.ljust(length - 1, "0"))
    start += length
  return "".join(parts)
