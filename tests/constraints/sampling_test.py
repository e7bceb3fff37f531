"""Tests for exact feasible sampling: counts against brute force, uniformity, no infeasible sample."""

import collections
import itertools

import numpy as np
import pytest
from scipy import stats

from pcnas_tf import errors
from pcnas_tf.constraints import sampling

# 5 layers x 3 choices, float latencies in ms whose sums hit budgets only after quantisation.
COSTS = ((0.1, 0.25, 0.4), (0.3, 0.1, 0.2), (0.15, 0.15, 0.5), (0.2, 0.35, 0.05), (0.3, 0.1, 0.45))
BASE = 0.7


@pytest.fixture
def rng():
  return np.random.default_rng(0)


@pytest.fixture
def table():
  return sampling.CostTable.from_costs(COSTS, base=BASE, resolution=1e-3)


def _feasible_brute_force(table, budget, prefix=()):
  limit = table.budget_units(budget)
  rest = itertools.product(*(range(k) for k in table.num_choices[len(prefix):]))
  paths = (tuple(prefix) + suffix for suffix in rest)
  return [p for p in paths if table.predict_units(p) <= limit]


@pytest.mark.parametrize("budget", [1.4, 1.75, 1.95, 2.2, 2.6])
@pytest.mark.parametrize("prefix", [(), (0,), (2, 0), (1, 2, 2), (2, 0, 2, 1, 2)])
def test_count_matches_brute_force(table, budget, prefix):
  expected = len(_feasible_brute_force(table, budget, prefix))
  assert sampling.count_feasible(table, budget, prefix) == expected


def test_budget_exactly_at_a_quantised_sum_is_feasible(table):
  path = (1, 1, 0, 2, 1)
  cost = table.predict(path)  # 0.7 + 0.25 + 0.1 + 0.15 + 0.05 + 0.1 = 1.35, with float error
  assert sampling.FeasibleSampler(table, cost).is_feasible(path)
  assert not sampling.FeasibleSampler(table, cost - 1e-3).is_feasible(path)


def test_samples_are_uniform_over_feasible_completions(table, rng):
  budget, prefix = 1.95, (1,)
  feasible = _feasible_brute_force(table, budget, prefix)
  assert 10 < len(feasible) < 3**4  # the budget really cuts the space
  samples = sampling.sample_feasible(table, budget, prefix, n=200 * len(feasible), rng=rng)
  counts = collections.Counter(samples)
  assert set(counts) <= set(feasible)
  observed = [counts[p] for p in feasible]
  assert stats.chisquare(observed).pvalue > 1e-3


def test_no_infeasible_sample_over_many_budgets(table, rng):
  for budget in np.linspace(1.2, 2.9, 25):
    sampler = sampling.FeasibleSampler(table, budget)
    for path in sampler.sample((), 50, rng):
      assert sampler.is_feasible(path)
      assert table.predict_units(path) <= table.budget_units(budget)


def test_samples_keep_the_prefix(table, rng):
  for path in sampling.sample_feasible(table, 2.2, (2, 0), n=30, rng=rng):
    assert path[:2] == (2, 0) and len(path) == 5


def test_budget_below_minimum_names_the_minimum(table):
  low, _ = table.cost_range()
  with pytest.raises(errors.UserError, match=f"{low:g}"):
    sampling.FeasibleSampler(table, low - 0.01)


def test_prefix_without_feasible_completion_cannot_be_sampled(table, rng):
  sampler = sampling.FeasibleSampler(table, 1.4)
  assert sampler.count((2, 0, 2)) == 0
  with pytest.raises(sampling.BudgetError, match="no completion"):
    sampler.sample((2, 0, 2), 1, rng)


def test_cost_range_of_space_and_prefix(table):
  low, high = sampling.cost_range(table)
  assert low == pytest.approx(BASE + 0.1 + 0.1 + 0.15 + 0.05 + 0.1)
  assert high == pytest.approx(BASE + 0.4 + 0.3 + 0.5 + 0.35 + 0.45)
  low, high = sampling.cost_range(table, (2, 0))
  assert low == pytest.approx(BASE + 0.4 + 0.3 + 0.15 + 0.05 + 0.1)
  assert high == pytest.approx(BASE + 0.4 + 0.3 + 0.5 + 0.35 + 0.45)


def test_bad_prefix_is_a_user_error(table):
  with pytest.raises(errors.UserError, match="out of range"):
    sampling.count_feasible(table, 2.0, (0, 3))


def test_rejection_sampler_drops_only_infeasible(table, rng):
  budget = 1.75
  kept = sampling.sample_rejection(table, budget, (), 500, rng)
  feasible = set(_feasible_brute_force(table, budget))
  assert set(kept) <= feasible
  # About count / size of the draws survive: the waste Algorithm 1 pays.
  assert len(kept) == pytest.approx(500 * len(feasible) / 3**5, rel=0.3)


def test_large_space_counts_are_exact_python_ints(rng):
  layers, choices = 21, 20
  costs = np.random.default_rng(1).integers(1, 50, size=(layers, choices))
  table = sampling.CostTable.from_costs(costs.tolist(), base=100, resolution=1)
  _, high = table.cost_range()
  assert sampling.count_feasible(table, high) == choices**layers
  sampler = sampling.FeasibleSampler(table, float(np.median(costs) * layers + 100))
  total = sampler.count()
  assert 2**63 < total < choices**layers
  # The count splits exactly over the first layer's choices.
  assert total == sum(sampler.count((c,)) for c in range(choices))
  assert all(sampler.is_feasible(p) for p in sampler.sample((), 20, rng))


def test_huge_counts_sample_every_first_choice(rng):
  table = sampling.CostTable.from_costs([[0, 1]] * 70, resolution=1)
  sampler = sampling.FeasibleSampler(table, 70)
  assert sampler.count() == 2**70
  first = [p[0] for p in sampler.sample((), 400, rng)]
  assert 150 < sum(first) < 250  # exact big-int draws stay unbiased on the leading choice
