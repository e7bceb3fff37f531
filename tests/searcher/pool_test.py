"""Tests for the partial-model pool: extension, potentials, top-P selection and completion."""

import collections
import math

import numpy as np
import pytest

from pcnas_tf import errors
from pcnas_tf.searcher import pool
from pcnas_tf.constraints import sampling

NUM_CHOICES = (3, 2, 3, 3)


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def test_extend_empty_pool_gives_every_first_operator():
  assert pool.extend([], NUM_CHOICES) == [(0,), (1,), (2,)]


def test_extend_gives_p_times_n_in_pool_then_choice_order():
  candidates = pool.extend([(2, 1), (0, 0)], NUM_CHOICES)
  assert candidates == [(2, 1, 0), (2, 1, 1), (2, 1, 2), (0, 0, 0), (0, 0, 1), (0, 0, 2)]


def test_extend_rejects_full_or_ragged_pools():
  with pytest.raises(errors.UserError, match="all 4 mixops"):
    pool.extend([(0, 0, 0, 0)], NUM_CHOICES)
  with pytest.raises(errors.UserError, match="different lengths"):
    pool.extend([(0,), (0, 1)], NUM_CHOICES)


def test_potential_is_mean_ignoring_nan():
  assert pool.potential([90.0, 92.0, math.nan, 94.0]) == pytest.approx(92.0)
  assert math.isnan(pool.potential([]))
  assert math.isnan(pool.potential([math.nan]))


def test_top_p_orders_by_potential_and_breaks_ties_by_candidate_order():
  candidates = [(0,), (1,), (2,), (3,), (4,)]
  potentials = [1.0, 3.0, 2.0, 3.0, 2.0]
  assert pool.top_p(candidates, potentials, 3) == [(1,), (3,), (2,)]


def test_top_p_never_keeps_nan_candidates():
  candidates = [(0,), (1,), (2,)]
  assert pool.top_p(candidates, [math.nan, 0.5, math.nan], 2) == [(1,)]
  assert pool.top_p(candidates, [math.nan] * 3, 2) == []


def test_top_p_checks_its_inputs():
  with pytest.raises(errors.UserError, match="2 candidates but 1"):
    pool.top_p([(0,), (1,)], [1.0], 1)
  with pytest.raises(errors.UserError, match="at least 1"):
    pool.top_p([(0,)], [1.0], 0)


def test_complete_keeps_prefix_and_is_uniform_without_sampler(rng):
  draws = [pool.complete((1, 0), NUM_CHOICES, rng) for _ in range(900)]
  assert all(d[:2] == (1, 0) and len(d) == 4 for d in draws)
  counts = collections.Counter(d[2:] for d in draws)
  assert len(counts) == 9 and min(counts.values()) > 60


def test_complete_with_sampler_is_always_feasible(rng):
  table = sampling.CostTable.from_costs([[0, 5, 9], [0, 4], [0, 5, 9], [0, 5, 9]], resolution=1)
  sampler = sampling.FeasibleSampler(table, 10)
  draws = [pool.complete((1,), NUM_CHOICES, rng, sampler) for _ in range(200)]
  assert all(sampler.is_feasible(d) and d[0] == 1 for d in draws)
  # Without the sampler some completions of (1,) break the budget: the sampler is doing the work.
  assert not all(sampler.is_feasible(pool.complete((1,), NUM_CHOICES, rng)) for _ in range(200))


@pytest.mark.parametrize("members", [[], [(2,)], [(1, 0, 2), (0, 1, 1)]])
def test_pool_travels_as_a_fixed_width_row(members):
  row = pool.to_row(members, 3, 4)
  assert row.shape == (1 + 3 + 3 * 4,)
  assert pool.from_row(row.astype(np.float64), 3) == members
