"""Tests of the calibration fit on synthetic latencies whose truth is known."""

import numpy as np

from pcnas_tf.constraints import calibration

NUM_CHOICES = (3, 3, 4, 2, 3)


def _truth_and_measured(rng):
  """True per-op costs, and 'measured' ones that are 20% high, noisy, with overhead counted per op."""
  truth = [rng.uniform(0.5, 3.0, n) for n in NUM_CHOICES]
  measured = [t * 1.2 + rng.normal(0, 0.05, len(t)) + 0.3 for t in truth]
  return truth, measured


def _paths(rng, n):
  return [tuple(int(rng.integers(k)) for k in NUM_CHOICES) for _ in range(n)]


def _latency(path, ops, base):
  return base + sum(ops[l][c] for l, c in enumerate(path))


def test_fit_reduces_error_on_held_out_networks():
  rng = np.random.default_rng(0)
  truth, measured = _truth_and_measured(rng)
  true_base, measured_base = 1.0, 2.0
  train, test = _paths(rng, 30), _paths(rng, 50)
  latencies = [_latency(p, truth, true_base) + rng.normal(0, 0.01) for p in train]
  fit = calibration.fit(train, latencies, measured, measured_base)
  true = np.array([_latency(p, truth, true_base) for p in test])
  raw_error = np.abs([_latency(p, measured, measured_base) for p in test] - true) / true
  fit_error = np.abs([_latency(p, fit.ops_ms, fit.base_ms) for p in test] - true) / true
  assert fit_error.mean() < 0.02 < raw_error.mean()
  assert 0.7 < fit.scale < 0.95  # recovers most of the 1 / 1.2 bias with one number


def test_fit_stays_near_measured_table_without_signal():
  rng = np.random.default_rng(1)
  _, measured = _truth_and_measured(rng)
  train = _paths(rng, 12)
  latencies = [_latency(p, measured, 2.0) for p in train]  # the table is already exact
  fit = calibration.fit(train, latencies, measured, 2.0)
  for fitted, given in zip(fit.ops_ms, measured):
    np.testing.assert_allclose(fitted, given, atol=1e-6)
  assert abs(fit.base_ms - 2.0) < 1e-6


def test_too_few_networks_keep_the_measured_table():
  measured = [[1.0, 2.0], [3.0, 4.0]]
  fit = calibration.fit([(0, 1), (1, 0)], [9.0, 9.0], measured, 1.0)
  assert fit.ops_ms == ((1.0, 2.0), (3.0, 4.0)) and fit.base_ms == 1.0


def test_one_hot_marks_each_layer_choice():
  features = calibration.one_hot([(0, 2), (1, 0)], (2, 3))
  np.testing.assert_array_equal(features, [[1, 0, 0, 0, 1], [0, 1, 1, 0, 0]])


def test_noise_alone_keeps_the_measured_table():
  rng = np.random.default_rng(3)
  measured = [rng.uniform(0.5, 3.0, n) for n in NUM_CHOICES]
  paths = _paths(rng, 12)
  latencies = [_latency(p, measured, 1.0) * rng.uniform(0.8, 1.25) for p in paths]
  fit = calibration.fit(paths, latencies, measured, 1.0)
  assert fit.scale == 1.0 and fit.ridge_lambda == float("inf")


def test_a_pure_overhead_is_fitted_as_one_constant():
  rng = np.random.default_rng(4)
  measured = [rng.uniform(0.5, 3.0, n) for n in NUM_CHOICES]
  paths = _paths(rng, 12)
  latencies = [_latency(p, measured, 1.0) + 0.7 for p in paths]
  fit = calibration.fit(paths, latencies, measured, 1.0)
  assert abs(fit.base_ms - 1.7) < 1e-9 and fit.scale == 1.0


def test_enough_networks_fit_whole_network_costs_even_from_a_wrong_table():
  rng = np.random.default_rng(5)
  truth = [rng.uniform(0.5, 3.0, n) for n in NUM_CHOICES]
  wrong = [rng.uniform(0.5, 3.0, n) for n in NUM_CHOICES]  # unrelated to the truth
  train, test = _paths(rng, 40), _paths(rng, 30)
  fit = calibration.fit(train, [_latency(p, truth, 1.0) for p in train], wrong, 0.2)
  true = np.array([_latency(p, truth, 1.0) for p in test])
  predicted = np.array([_latency(p, fit.ops_ms, fit.base_ms) for p in test])
  assert np.max(np.abs(predicted - true) / true) < 0.01


def test_costs_and_constant_are_never_negative():
  rng = np.random.default_rng(6)
  measured = [rng.uniform(0.5, 3.0, n) for n in NUM_CHOICES]
  paths = _paths(rng, 8)
  # Whole networks far cheaper than the summed table: an unbounded fit would go below zero.
  latencies = [0.1 * _latency(p, measured, 0.0) - 1.0 + rng.uniform(0, 0.05) for p in paths]
  latencies = np.maximum(latencies, 0.05)
  fit = calibration.fit(paths, latencies, measured, 1.0)
  assert min(min(layer) for layer in fit.ops_ms) >= 0 and fit.base_ms >= 0


def test_per_stage_scales_win_when_stages_are_off_by_different_factors():
  # Many layers, few networks (as in the small space): whole networks cost the measured table times a
  # factor per stage. The per-stage model recovers the factors and predicts better than the fit without
  # groups.
  rng = np.random.default_rng(3)
  num_choices, stages, factors = (4,) * 12, [0] * 4 + [1] * 4 + [2] * 4, (0.6, 1.0, 1.5)
  measured = [rng.uniform(0.2, 1.0, n) for n in num_choices]
  truth = [m * factors[s] for m, s in zip(measured, stages)]
  paths = [tuple(int(rng.integers(n)) for n in num_choices) for _ in range(40)]
  test = [tuple(int(rng.integers(n)) for n in num_choices) for _ in range(40)]
  latencies = [_latency(p, truth, 0.5) * (1 + rng.normal(0, 0.01)) for p in paths]
  grouped = calibration.fit(paths, latencies, measured, 0.5, groups=stages)
  assert grouped.model == "group_scale"
  np.testing.assert_allclose(grouped.group_scales, factors, rtol=0.1)
  plain = calibration.fit(paths, latencies, measured, 0.5)
  true = np.array([_latency(p, truth, 0.5) for p in test])
  error = lambda fit: np.mean(np.abs([_latency(p, fit.ops_ms, fit.base_ms) for p in test] - true) / true)
  assert error(grouped) < 0.5 * error(plain) and plain.model != "group_scale"


def test_the_per_op_ridge_must_win_by_more_than_one_network():
  rng = np.random.default_rng(7)
  simple = rng.normal(0, 0.03, 50)
  # Better on average only through one network: not significant, the few-parameter model stays.
  lucky = simple.copy()
  lucky[0] = 0.0
  simple[0] = 0.1
  assert calibration._choose([("table", 1.0, simple)], [("ridge", 0.1, lucky)], 0.0)[0] == "table"
  # Better on every network by a little: significant, the ridge wins.
  everywhere = rng.normal(0, 0.03, 50)
  assert calibration._choose([("table", 1.0, everywhere)], [("ridge", 0.1, 0.9 * everywhere)], 0.0)[0] == "ridge"
  # Among few-parameter models the lowest CV error wins, however slightly.
  assert calibration._choose([("table", 1.0, everywhere), ("constant", 1.0, 0.99 * everywhere)],
                             [], 0.0)[0] == "constant"


def test_errors_at_round_off_are_ties_broken_toward_the_simpler_model():
  """Exact timings fit every model to round-off; which residual is lowest must not pick the model."""
  rng = np.random.default_rng(3)
  noise = lambda: rng.normal(0, 1e-15, 20)
  few = [("table", float("inf"), noise()), ("constant", float("inf"), noise() * 0.5)]
  per_op = [("ridge", lam, noise() * (0.1 if lam == 1.0 else 1.0)) for lam in (0.01, 1.0, 100.0)]
  assert calibration._choose(few, per_op, 1e-9)[0] == "table"
  assert calibration._choose(few[1:], per_op, 1e-9)[0] == "constant"
  # Without the tie the lowest round-off wins: the choice the rule removes.
  assert calibration._choose(few[1:], per_op, 0.0)[:2] == ("ridge", 1.0)
  # The largest penalty among tied ridges, when the ridge is clearly better than the few.
  assert calibration._choose([("table", float("inf"), np.full(20, 0.1))], per_op, 1e-9)[1] == 100.0
