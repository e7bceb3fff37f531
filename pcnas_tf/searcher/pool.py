"""The partial-model pool of PC-NAS (paper section 3.3, Algorithms 1 and 2), as pure functions.

A partial model is a tuple of choice indices for the first l mixops, like the paths of `sampling`:
indices make costs, counts and compact strings direct, and `SearchSpace.arch_from_indices` turns a full
one back into op names at the edges. A pool is a list of partial models of one length, best first.

One pool update: `extend` the pool by every operator of the next mixop, score each candidate with the
`potential` of its sampled completions, and keep the `top_p`. Between updates the supergraph trains on
`complete`d members of the pool. The oracle that drives this (and any keras-tuner wrapper) lives elsewhere.
"""

import math
from typing import Sequence

import numpy as np

from pcnas_tf import errors
from pcnas_tf.constraints import sampling

PartialModel = tuple[int, ...]


def key(partial: PartialModel) -> str:
  """A partial model as a dictionary key that survives JSON (`0,2,1`)."""
  return ",".join(str(int(c)) for c in partial)


def potential_of(correct: int, images: int) -> float:
  """A candidate's potential from its completions' correct predictions and images (NaN for none).

  Exact: the counts are integers (exact in float64 below 2**53) and the one division is correctly
  rounded, so the potential does not depend on how its completions were split or their counts summed.
  """
  return correct / images if images else float("nan")


def extend(pool: Sequence[PartialModel], num_choices: Sequence[int]) -> list[PartialModel]:
  """The candidates of the next pool update, in pool order then choice order.

  Args:
    pool: partial models of equal length l; empty before the first update.
    num_choices: the number of operators of every mixop of the space.

  Returns:
    Every operator of mixop 1 when `pool` is empty; else the P x N extensions by mixop l + 1.
  """
  if not pool:
    return [(choice,) for choice in range(num_choices[0])]
  lengths = {len(partial) for partial in pool}
  if len(lengths) > 1:
    raise errors.UserError(f"Pool members have different lengths {sorted(lengths)}; a pool holds one length.")
  (length,) = lengths
  if length >= len(num_choices):
    raise errors.UserError(f"Pool members already choose all {len(num_choices)} mixops; nothing to extend.")
  return [tuple(partial) + (choice,) for partial in pool for choice in range(num_choices[length])]


def potential(accuracies: Sequence[float]) -> float:
  """Algorithm 1's potential: the mean accuracy of a candidate's feasible sampled completions.

  NaN entries (a failed evaluation) are left out of the mean. With no accuracy left, for example when
  the candidate has no feasible completion, the potential is NaN and `top_p` never keeps the candidate.
  """
  finite = [float(a) for a in accuracies if not math.isnan(float(a))]
  return sum(finite) / len(finite) if finite else math.nan


def top_p(candidates: Sequence[PartialModel], potentials: Sequence[float], p: int) -> list[PartialModel]:
  """The `p` candidates with the highest potential, best first.

  Ties keep candidate order (a stable sort), so an update is deterministic given its potentials.
  Candidates with a NaN potential are never kept, so the result may hold fewer than `p`.
  """
  if len(candidates) != len(potentials):
    raise errors.UserError(f"Got {len(candidates)} candidates but {len(potentials)} potentials.")
  if p < 1:
    raise errors.UserError(f"Pool size {p} must be at least 1.")
  scored = [i for i, value in enumerate(potentials) if not math.isnan(value)]
  ranked = sorted(scored, key=lambda i: -potentials[i])
  return [tuple(candidates[i]) for i in ranked[:p]]


def complete(partial: PartialModel, num_choices: Sequence[int], rng: np.random.Generator,
             sampler: sampling.Sampler | None = None) -> PartialModel:
  """One full path for a training step: `partial` with its missing mixops drawn at random.

  Args:
    partial: the fixed first choices (empty during warm-up: a uniform model from the whole space).
    num_choices: the number of operators of every mixop.
    rng: the random generator.
    sampler: when given, the completion is uniform among the feasible ones; else uniform over all.
  """
  if len(partial) > len(num_choices):
    raise errors.UserError(f"Partial model {partial} is longer than the {len(num_choices)} mixops.")
  if sampler is not None:
    return sampler.sample(partial, 1, rng)[0]
  return tuple(partial) + tuple(int(rng.integers(k)) for k in num_choices[len(partial):])


def to_row(pool: Sequence[PartialModel], pool_size: int, num_layers: int) -> np.ndarray:
  """A pool as one fixed-width integer row (count, member lengths, choices, padded with -1).

  The width depends only on P and the number of mixops, so a pool can travel in one all-reduce
  (`cluster.gather`) whatever its size.
  """
  row = np.full(1 + pool_size + pool_size * num_layers, -1, np.int64)
  row[0] = len(pool)
  row[1:1 + len(pool)] = [len(member) for member in pool]
  flat = [c for member in pool for c in member]
  row[1 + pool_size:1 + pool_size + len(flat)] = flat
  return row


def from_row(row, pool_size: int) -> list[PartialModel]:
  """The pool `to_row` encoded."""
  row = [int(v) for v in row]
  lengths, flat, pool = row[1:1 + row[0]], row[1 + pool_size:], []
  for length in lengths:
    pool.append(tuple(flat[:length]))
    flat = flat[length:]
  return pool
