"""Tests of the pool Oracle, driven without TensorFlow or a supergraph."""

import math

import pytest

from pcnas_tf.searcher import oracle as oracle_lib

NUM_CHOICES = (3, 2, 3)


def _score(candidate):
  """A made-up potential that prefers high choices early and low choices late."""
  return sum((c + 1) * (len(NUM_CHOICES) - i) for i, c in enumerate(candidate)) / 20.0


def _oracle(tmp_path, pool_size=2):
  oracle = oracle_lib.PCNASOracle(NUM_CHOICES, pool_size, seed=0)
  oracle._set_project_dir(str(tmp_path), "oracle")  # pylint: disable=protected-access
  return oracle


def _run_interval(oracle, score=_score, stop_after=None):
  """Hands out and scores the interval's trials; returns how many trials it took."""
  trials = 0
  while stop_after is None or trials < stop_after:
    trial = oracle.create_trial("chief")
    if trial.status != "RUNNING":
      break
    member = oracle_lib.member_of(trial.hyperparameters.values)
    metrics = {oracle_lib.potential_name(c): score(member + (c,))
               for c in range(NUM_CHOICES[len(member)])}
    metrics["potential"] = max(metrics.values())
    oracle_lib.report(oracle, trial, metrics)
    trials += 1
  return trials


def test_first_interval_scores_every_operator_of_mixop_one(tmp_path):
  oracle = _oracle(tmp_path)
  oracle.start_interval()
  assert oracle.candidates() == [(0,), (1,), (2,)]
  assert _run_interval(oracle) == 1  # one trial: the empty member and its 3 extensions
  assert oracle.pool == [(2,), (1,)]


def test_pool_is_top_p_of_p_times_n_candidates_one_trial_per_member(tmp_path):
  oracle = _oracle(tmp_path)
  oracle.start_interval()
  _run_interval(oracle)
  oracle.start_interval()
  candidates = oracle.candidates()
  assert len(candidates) == 2 * NUM_CHOICES[1]
  assert _run_interval(oracle) == 2
  expected = sorted(candidates, key=lambda c: -_score(c))[:2]
  assert oracle.pool == expected
  assert oracle.history[-1]["pool_potentials"] == [_score(c) for c in expected]


def test_no_pool_update_until_every_candidate_is_scored(tmp_path):
  oracle = _oracle(tmp_path)
  oracle.start_interval()
  _run_interval(oracle)
  pool_before = list(oracle.pool)
  oracle.start_interval()
  _run_interval(oracle, stop_after=1)
  assert oracle.pool == pool_before and len(oracle.history) == 1
  assert oracle.create_trial("chief").status == "RUNNING"


def test_full_search_ends_with_full_architectures_and_stops(tmp_path):
  oracle = _oracle(tmp_path)
  for _ in NUM_CHOICES:
    oracle.start_interval()
    _run_interval(oracle)
  assert oracle.finished and all(len(member) == len(NUM_CHOICES) for member in oracle.pool)
  assert oracle.create_trial("chief").status == "STOPPED"


def test_candidates_without_feasible_completions_are_never_kept(tmp_path):
  oracle = _oracle(tmp_path, pool_size=3)
  oracle.start_interval()
  _run_interval(oracle, score=lambda c: math.nan if c[0] == 2 else _score(c))
  assert oracle.pool == [(1,), (0,)]


def test_state_round_trip_mid_interval_continues_identically(tmp_path):
  reference = _oracle(tmp_path / "a")
  for _ in NUM_CHOICES:
    reference.start_interval()
    _run_interval(reference)
  oracle = _oracle(tmp_path / "b")
  oracle.start_interval()
  _run_interval(oracle)
  oracle.start_interval()
  _run_interval(oracle, stop_after=1)
  restored = _oracle(tmp_path / "c")
  restored.trials = dict(oracle.trials)
  restored.set_state(oracle.get_state())
  _run_interval(restored)
  restored.start_interval()
  _run_interval(restored)
  assert restored.pool == reference.pool and restored.history == reference.history


def test_starting_an_interval_twice_is_refused(tmp_path):
  oracle = _oracle(tmp_path)
  oracle.start_interval()
  with pytest.raises(RuntimeError, match="still being scored"):
    oracle.start_interval()
