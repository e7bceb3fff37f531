"""Tests for the pool search and the EA and random baselines on a tiny additive problem."""

import collections
import itertools

import numpy as np
import pytest
from scipy import stats

from pcnas_tf import errors
from pcnas_tf.searcher import baselines as evolution
from pcnas_tf.constraints import sampling

# 5 mixops x 3 operators; costs in FLOP-like integers, scores separable so the optimum is known.
COSTS = ((1, 4, 6), (2, 1, 5), (3, 3, 7), (1, 5, 2), (4, 1, 6))
VALUES = ((0.0, 1.0, 3.0), (0.5, 0.0, 2.0), (0.0, 0.2, 1.5), (1.0, 0.0, 2.5), (0.0, 0.3, 1.0))
TABLE = sampling.CostTable.from_costs(COSTS, base=10, resolution=1)
_, MAX_COST = TABLE.cost_range()


def score(path):
  return sum(VALUES[l][c] for l, c in enumerate(path))


def best_feasible(sampler):
  paths = itertools.product(range(3), repeat=5)
  return max((p for p in paths if sampler.is_feasible(p)), key=score)


@pytest.fixture
def rng():
  return np.random.default_rng(0)


class CountingEvaluate:

  def __init__(self):
    self.calls = []

  def __call__(self, path):
    self.calls.append(path)
    return score(path)


def test_pool_search_is_exact_on_a_separable_unconstrained_problem(rng):
  sampler = sampling.FeasibleSampler(TABLE, MAX_COST)
  outcome = evolution.progressive_search(sampler, score, rng, pool_size=2, num_samples=3)
  assert outcome.best_arch == best_feasible(sampler) == (2, 2, 2, 2, 2)
  assert outcome.evaluations == evolution.progressive_evaluations((3,) * 5, 2, 3)
  assert [p for p, _ in outcome.pool] == [(2, 2, 2, 2, 2), (2, 2, 2, 2, 1)]


def test_pool_search_under_a_budget_evaluates_only_feasible_paths(rng):
  sampler = sampling.FeasibleSampler(TABLE, 22)
  evaluate = CountingEvaluate()
  outcome = evolution.progressive_search(sampler, evaluate, rng, pool_size=3, num_samples=4)
  assert all(sampler.is_feasible(p) for p in evaluate.calls)
  assert outcome.evaluations == len(evaluate.calls)
  # Some candidates had no feasible completion and cost nothing.
  assert outcome.evaluations < evolution.progressive_evaluations((3,) * 5, 3, 4)
  assert sampler.is_feasible(outcome.best_arch) and len(outcome.best_arch) == 5


def test_progressive_evaluations_counts_the_first_updates_with_a_small_pool():
  # Updates: 3 (first mixop), then 3 x 3 while the pool is still small, then 5 x 3 for the rest.
  assert evolution.progressive_evaluations((3,) * 5, 5, 2) == (3 + 9 + 15 + 15 + 15) * 2


@pytest.mark.parametrize("method", [evolution.random_search, evolution.evolutionary_search])
def test_baselines_spend_exactly_the_budget_on_feasible_paths(method, rng):
  sampler = sampling.FeasibleSampler(TABLE, 20)
  evaluate = CountingEvaluate()
  outcome = method(sampler, evaluate, 37, rng)
  assert outcome.evaluations == len(evaluate.calls) == 37
  assert all(sampler.is_feasible(p) for p in evaluate.calls)
  assert outcome.best_score == max(score(p) for p in evaluate.calls)
  assert outcome.best_score == score(outcome.best_arch)


def test_evolution_climbs_to_the_optimum(rng):
  # Unconstrained and separable: every improving single-mixop step is available, so hill climbing wins.
  sampler = sampling.FeasibleSampler(TABLE, MAX_COST)
  outcome = evolution.evolutionary_search(sampler, score, 60, rng)
  assert outcome.best_arch == best_feasible(sampler)
  # The initial population alone did not contain it: the mutations did the work.
  assert best_feasible(sampler) not in [p for p, _ in outcome.history[:5]]


def test_mutate_is_uniform_over_feasible_single_mixop_changes(rng):
  sampler = sampling.FeasibleSampler(TABLE, 20)
  parent = (0, 1, 0, 0, 1)
  children = collections.Counter(evolution.mutate(parent, sampler, rng) for _ in range(3000))
  for child in children:
    assert sampler.is_feasible(child)
    assert sum(a != b for a, b in zip(parent, child)) == 1
  neighbours = [parent[:l] + (c,) + parent[l + 1:] for l in range(5) for c in range(3) if c != parent[l]]
  feasible = [n for n in neighbours if sampler.is_feasible(n)]
  assert set(children) == set(feasible) and len(feasible) < len(neighbours)
  assert stats.chisquare([children[n] for n in feasible]).pvalue > 1e-3


def test_mutate_falls_back_to_a_fresh_sample_at_the_budget_edge(rng):
  cheapest = (0, 1, 0, 0, 1)
  sampler = sampling.FeasibleSampler(TABLE, TABLE.predict(cheapest))
  assert sampler.count() == 2  # layer 2's two cheapest operators tie
  assert evolution.mutate(cheapest, sampler, rng) in {(0, 1, 0, 0, 1), (0, 1, 1, 0, 1)}


def test_budgets_and_sizes_are_checked(rng):
  sampler = sampling.FeasibleSampler(TABLE, MAX_COST)
  with pytest.raises(errors.UserError, match="at least 1"):
    evolution.random_search(sampler, score, 0, rng)
  with pytest.raises(errors.UserError, match="S = 0"):
    evolution.progressive_search(sampler, score, rng, num_samples=0)
