"""Search methods on any evaluation function: PC-NAS' pool search and the paper's baselines.

All three work on paths (tuples of choice indices) under one feasibility definition, a
`sampling.Sampler`, and call `evaluate(path) -> score` (higher is better). A budget is a number of
`evaluate` calls, counted the same way for every method: every call counts, repeated paths included, and
an infeasible path is never evaluated. So `outcome.evaluations` of two methods compare directly.

  * `progressive_search`: Algorithm 2's pool updates with Algorithm 1's potential, S samples per candidate.
  * `evolutionary_search`: section 4.4's EA: population P = 5, a mutation replaces the operator of one
    random mixop with another, infeasible children are rejected.
  * `random_search`: uniform feasible samples.
"""

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from pcnas_tf import errors
from pcnas_tf.searcher import pool
from pcnas_tf.constraints import sampling

Path = sampling.Path
Evaluate = Callable[[Path], float]


@dataclasses.dataclass(frozen=True)
class SearchOutcome:
  """What a search found.

  Attributes:
    best_arch: the chosen path.
    best_score: its score as the method saw it (a potential for the pool search, else one evaluation).
    history: every (path, score) evaluated, in order; its length is the evaluations spent.
    pool: the pool search's final pool as (path, potential), best first; empty for the baselines.
  """
  best_arch: Path
  best_score: float
  history: tuple[tuple[Path, float], ...]
  pool: tuple[tuple[Path, float], ...] = ()

  @property
  def evaluations(self) -> int:
    return len(self.history)


class _Recorder:
  """Calls `evaluate` and keeps the history every method is budgeted on."""

  def __init__(self, evaluate: Evaluate):
    self._evaluate = evaluate
    self.history: list[tuple[Path, float]] = []

  def __call__(self, path: Path) -> float:
    score = float(self._evaluate(tuple(path)))
    self.history.append((tuple(path), score))
    return score

  def best_outcome(self) -> SearchOutcome:
    """The best-scored evaluation; ties go to the earliest."""
    best = max(range(len(self.history)), key=lambda i: (self.history[i][1], -i))
    return SearchOutcome(*self.history[best], tuple(self.history))


def _check_budget(budget_evals: int) -> None:
  if budget_evals < 1:
    raise errors.UserError(f"Evaluation budget {budget_evals} must be at least 1.")


def random_search(sampler: sampling.Sampler, evaluate: Evaluate, budget_evals: int,
                  rng: np.random.Generator) -> SearchOutcome:
  """Evaluates `budget_evals` uniform feasible paths and returns the best scored."""
  _check_budget(budget_evals)
  recorder = _Recorder(evaluate)
  for path in sampler.sample((), budget_evals, rng):
    recorder(path)
  return recorder.best_outcome()


def evolutionary_search(sampler: sampling.Sampler, evaluate: Evaluate, budget_evals: int,
                        rng: np.random.Generator, population: int = 5) -> SearchOutcome:
  """Steady-state evolution, as the paper's EA baseline (section 4.4).

  The population starts as `population` uniform feasible paths. Each step mutates a uniformly chosen
  member, evaluates the child and lets it replace the worst member when it scores higher.
  """
  _check_budget(budget_evals)
  if population < 1:
    raise errors.UserError(f"Population size {population} must be at least 1.")
  recorder = _Recorder(evaluate)
  members = [(path, recorder(path)) for path in sampler.sample((), min(population, budget_evals), rng)]
  while len(recorder.history) < budget_evals:
    parent = members[int(rng.integers(len(members)))][0]
    child = mutate(parent, sampler, rng)
    score = recorder(child)
    worst = min(range(len(members)), key=lambda i: members[i][1])
    if score > members[worst][1]:
      members[worst] = (child, score)
  return recorder.best_outcome()


def mutate(parent: Path, sampler: sampling.Sampler, rng: np.random.Generator) -> Path:
  """A feasible child of `parent` with the operator of one random mixop replaced by another.

  Proposing (mixop uniform, new operator uniform) and rejecting infeasible children until one is
  feasible draws each feasible child with probability proportional to its proposal weight; this draws
  from that same distribution directly, without a retry loop. With no feasible single-mixop mutation
  (only at the very edge of the budget), a fresh uniform feasible path stands in for the child.
  """
  children, weights = [], []
  for layer, count in enumerate(sampler.num_choices):
    for choice in range(count):
      child = parent[:layer] + (choice,) + parent[layer + 1:]
      if choice != parent[layer] and sampler.is_feasible(child):
        children.append(child)
        weights.append(1.0 / (count - 1))
  if not children:
    return sampler.sample((), 1, rng)[0]
  weights = np.asarray(weights) / sum(weights)
  return children[int(rng.choice(len(children), p=weights))]


def progressive_search(sampler: sampling.Sampler, evaluate: Evaluate, rng: np.random.Generator,
                       pool_size: int = 5, num_samples: int = 20) -> SearchOutcome:
  """PC-NAS' search: one pool update per mixop, each candidate scored on `num_samples` completions.

  The potential of a candidate is the mean score of `num_samples` uniform feasible completions
  (Algorithm 1 without wasted draws); a candidate with no feasible completion costs no evaluation and is
  never kept. After the last mixop the pool holds full paths and the best potential wins.

  Raises:
    BudgetError: when no candidate of some update has a feasible completion.
  """
  if num_samples < 1:
    raise errors.UserError(f"Evaluation number S = {num_samples} must be at least 1.")
  recorder, partials, potentials = _Recorder(evaluate), [], {}
  for _ in sampler.num_choices:
    candidates = pool.extend(partials, sampler.num_choices)
    for candidate in candidates:
      potentials[candidate] = _potential(candidate, sampler, recorder, rng, num_samples)
    partials = pool.top_p(candidates, [potentials[c] for c in candidates], pool_size)
    if not partials:
      raise sampling.BudgetError("No candidate partial model has a feasible completion; raise the budget.")
  final = tuple((partial, potentials[partial]) for partial in partials)
  return SearchOutcome(final[0][0], final[0][1], tuple(recorder.history), final)


def _potential(candidate: Path, sampler: sampling.Sampler, recorder: _Recorder,
               rng: np.random.Generator, num_samples: int) -> float:
  if sampler.count(candidate) == 0:
    return math.nan
  return pool.potential([recorder(path) for path in sampler.sample(candidate, num_samples, rng)])


def progressive_evaluations(num_choices: Sequence[int], pool_size: int, num_samples: int) -> int:
  """The evaluations `progressive_search` spends when every candidate has a feasible completion."""
  total, pool_members = 0, 0
  for count in num_choices:
    candidates = count if pool_members == 0 else pool_members * count
    total += candidates * num_samples
    pool_members = min(pool_size, candidates)
  return total
