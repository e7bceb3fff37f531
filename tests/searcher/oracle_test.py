"""Tests of the pool Oracle, driven without TensorFlow or a supergraph."""

import json
import math

import pytest

from pcnas_tf import errors
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
    candidate = oracle_lib.candidate_of(trial.hyperparameters.values)
    oracle_lib.report(oracle, trial, {oracle_lib.POTENTIAL: score(candidate)})
    trials += 1
  return trials


def test_first_interval_scores_every_operator_of_mixop_one(tmp_path):
  oracle = _oracle(tmp_path)
  oracle.start_interval()
  assert oracle.candidates() == [(0,), (1,), (2,)]
  assert _run_interval(oracle) == 3  # a trial per candidate
  assert oracle.pool == [(2,), (1,)]


def test_pool_is_top_p_of_p_times_n_candidates_one_trial_per_candidate(tmp_path):
  oracle = _oracle(tmp_path)
  oracle.start_interval()
  _run_interval(oracle)
  oracle.start_interval()
  candidates = oracle.candidates()
  assert len(candidates) == 2 * NUM_CHOICES[1]
  assert _run_interval(oracle) == len(candidates)
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


def _completer(candidate):
  """Made-up completions: seven full paths per candidate, depending on the candidate only."""
  rest = len(NUM_CHOICES) - len(candidate)
  return [tuple(candidate) + tuple((j * (i + 2) + sum(candidate)) % NUM_CHOICES[len(candidate) + i]
                                   for i in range(rest)) for j in range(7)]


def _count(path, j):
  """Made-up correct predictions of completion j (on a batch of 10 images)."""
  return (sum((k + 1) * v for k, v in enumerate(path)) + j) % 11


def _score_chunks(oracle, order=None):
  """Scores every trial of the interval by counting, reporting them in `order` (trial indices)."""
  trials = oracle.take_trials("chief")
  for index in order(len(trials)) if order else range(len(trials)):
    values = trials[index].hyperparameters.values
    paths = json.loads(values[oracle_lib.COMPLETIONS])
    first = values[oracle_lib.FIRST]
    correct = sum(_count(p, first + j) for j, p in enumerate(paths))
    oracle_lib.report(oracle, trials[index], {oracle_lib.CORRECT: correct, oracle_lib.IMAGES: 10 * len(paths)})
  return len(trials)


@pytest.mark.parametrize("size", [1, 3, 7])
def test_chunks_of_completions_give_the_pool_of_one_trial_per_candidate_in_any_report_order(tmp_path, size):
  whole, chunked = _oracle(tmp_path / "whole"), oracle_lib.PCNASOracle(NUM_CHOICES, 2, seed=0,
                                                                      trial_completions=size)
  chunked._set_project_dir(str(tmp_path / "chunked"), "oracle")  # pylint: disable=protected-access
  for _ in NUM_CHOICES:
    whole.start_interval(_completer)
    trials = _score_chunks(whole)
    chunked.start_interval(_completer)
    assert _score_chunks(chunked, order=lambda n: list(reversed(range(n)))) == trials * -(-7 // size)
  assert chunked.history == whole.history
  # The potential is the completions' correct predictions over their images, exactly.
  last = whole.history[-1]
  for candidate, potential in zip(last["candidates"], last["potentials"]):
    paths = _completer(tuple(candidate[:-1]) + (candidate[-1],))
    assert potential == sum(_count(p, j) for j, p in enumerate(paths)) / 70


def test_a_task_given_another_tasks_results_row_forms_the_same_pool(tmp_path):
  scorer, follower = _oracle(tmp_path / "a"), _oracle(tmp_path / "b")
  for _ in NUM_CHOICES:
    scorer.start_interval(_completer)
    follower.start_interval(_completer)
    assert follower.results_row() == [-1, -1] * follower.interval_trials
    _score_chunks(scorer)
    follower.fill_results(scorer.results_row())
    assert follower.pool == scorer.pool and not follower.pending
  assert follower.history == scorer.history


def test_taken_trials_are_all_of_the_interval_and_the_end_waits_for_none_of_them(tmp_path):
  oracle = _oracle(tmp_path)
  oracle.start_interval(_completer)
  trials = oracle.take_trials("chief", limit=2)
  assert len(trials) == 2 and len(oracle.take_trials("chief")) == 1 and not oracle.take_trials("chief")
  assert not oracle.tuner_ids and oracle.workers_holding_trials == 0


def test_the_project_directory_is_written_once_an_interval_not_per_trial(tmp_path):
  oracle = _oracle(tmp_path)
  oracle.start_interval(_completer)
  oracle_file = tmp_path / "oracle" / "oracle.json"
  written = oracle_file.stat().st_mtime_ns if oracle_file.exists() else None
  trials = oracle.take_trials("chief")
  oracle_lib.report(oracle, trials[0], {oracle_lib.CORRECT: 1, oracle_lib.IMAGES: 70})
  assert (oracle_file.stat().st_mtime_ns if oracle_file.exists() else None) == written
  for trial in trials[1:]:
    oracle_lib.report(oracle, trial, {oracle_lib.CORRECT: 1, oracle_lib.IMAGES: 70})
  assert json.loads(oracle_file.read_text())["history"] == oracle.history


def test_a_state_of_an_earlier_version_resumes_between_intervals_and_is_refused_mid_interval(tmp_path):
  oracle = _oracle(tmp_path / "a")
  oracle.start_interval()
  _run_interval(oracle)
  # As a checkpoint holds it: JSON, without the fields this version added.
  closed = {k: v for k, v in json.loads(json.dumps(oracle.get_state())).items()
            if k not in ("pieces", "results")}
  restored = _oracle(tmp_path / "b")
  restored.trials = dict(oracle.trials)
  restored.set_state(closed)  # between intervals: nothing of the old trials is needed
  restored.start_interval()
  _run_interval(restored)
  assert len(restored.history) == 2
  oracle.start_interval()
  open_state = {k: v for k, v in json.loads(json.dumps(oracle.get_state())).items()
                if k not in ("pieces", "results")}
  with pytest.raises(errors.UserError, match="in the middle of scoring mixop 2 by an earlier pcnas_tf"):
    _oracle(tmp_path / "c").set_state(open_state)
