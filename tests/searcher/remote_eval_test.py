"""Tests of potential evaluation by workers over keras-tuner's gRPC service, on 127.0.0.1 only.

The fast tests serve a `PCNASOracle` in this process and drive it with `Worker`s and raw keras-tuner
clients holding a made-up evaluator; the slow one runs a real search as chief and two worker processes.
"""

import json
import os
import subprocess
import sys
import threading
import time
import types

import grpc
import pytest

from pcnas_tf import errors
from pcnas_tf.searcher import oracle as oracle_lib
from pcnas_tf.searcher import remote_eval
from pcnas_tf.searcher import loop as search_lib
from tests import helpers as testing

NUM_CHOICES = (3, 2, 3)


def _completer(candidate):
  """Made-up completions: a few full paths that depend on the candidate only."""
  rest = len(NUM_CHOICES) - len(candidate)
  return [tuple(candidate) + tuple((j + i) % NUM_CHOICES[len(candidate) + i] for i in range(rest))
          for j in range(3)]


class _Evaluator:
  """Counts a completion's correct predictions from its path and batch alone (10 images a batch), and
  remembers the completions it was asked, as (path, completion index) pairs."""

  def __init__(self):
    self.supergraph = types.SimpleNamespace(variables=[])
    self.seen = set()

  def correct_counts(self, completions, offsets):
    self.seen.update((tuple(p), offsets[k] + j) for k, paths in completions.items()
                     for j, p in enumerate(paths))
    return {k: [(sum((i + 1) * v for i, v in enumerate(p)) + offsets[k] + j) % 11
                for j, p in enumerate(paths)] for k, paths in completions.items()}

  def batch_size(self, j):
    del j
    return 10


@pytest.fixture(name="served")
def _served(tmp_path, monkeypatch):
  """A fresh Oracle served on a free loopback port; yields (oracle, work_dir)."""
  port = testing.free_port()
  for name, value in testing.kerastuner_env(port, "worker0").items():
    if name.startswith("KERASTUNER_"):
      monkeypatch.setenv(name, value)
  oracle = oracle_lib.PCNASOracle(NUM_CHOICES, 2, lease_timeout=0.5, seed=0)
  oracle._set_project_dir(str(tmp_path), "oracle")  # pylint: disable=protected-access
  settings = remote_eval.ServeSettings(f"127.0.0.1:{port}", lease_timeout=0.5, stop_grace=0.5)
  with remote_eval.serving(oracle, settings):
    yield oracle, str(tmp_path)


def _local_oracle(directory):
  """The same Oracle, to be scored in this process."""
  oracle = oracle_lib.PCNASOracle(NUM_CHOICES, 2, seed=0)
  oracle._set_project_dir(str(directory), "oracle")  # pylint: disable=protected-access
  return oracle


def _score_locally(oracle, evaluator):
  trials = oracle.take_trials("chief")
  for trial, metrics in zip(trials, remote_eval.score_trials(evaluator, [t.hyperparameters.values
                                                                         for t in trials])):
    oracle_lib.report(oracle, trial, metrics)


def _open_interval(oracle, work_dir):
  remote_eval.save_interval_weights(work_dir, len(oracle.history), _Evaluator().supergraph, {})
  oracle.start_interval(_completer)


def _wait_for(condition, timeout=30.0):
  deadline = time.monotonic() + timeout
  while not condition():
    assert time.monotonic() < deadline, "timed out"
    time.sleep(0.05)


def test_two_workers_score_every_candidate_once_with_the_chiefs_completions(served, tmp_path):
  oracle, work_dir = served
  evaluators = [_Evaluator(), _Evaluator()]
  workers = [remote_eval.Worker(work_dir, lambda e=e: e, f"worker{i}", rpc_timeout=5, connect_timeout=5,
                                poll_interval=0.05) for i, e in enumerate(evaluators)]
  threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
  for thread in threads:
    thread.start()
  for _ in NUM_CHOICES:
    _open_interval(oracle, work_dir)
    _wait_for(lambda: not oracle.interval_open)
  for thread in threads:
    thread.join(timeout=10)
  assert not any(thread.is_alive() for thread in threads)  # told the search is over, they stop
  reference, local_evaluator = _local_oracle(tmp_path / "local"), _Evaluator()
  for _ in NUM_CHOICES:
    reference.start_interval(_completer)
    _score_locally(reference, local_evaluator)
  assert oracle.history == reference.history
  assert sum(w.scored for w in workers) == len(oracle.end_order) == len(set(oracle.end_order))
  seen = evaluators[0].seen | evaluators[1].seen
  assert seen == local_evaluator.seen  # the same completions, drawn by the chief
  assert not any(oracle_lib.COMPLETIONS in t.hyperparameters.values for t in oracle.trials.values())


def _lease_expired(oracle, work_dir):
  """Opens an interval; worker0 takes its one trial and holds it past the lease, then worker1 asks.

  Returns (worker0's client, its trial, worker1's client, the trial worker1 was given).
  """
  _open_interval(oracle, work_dir)
  first, _ = remote_eval.connect(5)
  second, _ = remote_eval.connect(5)
  taken = first.create_trial("worker0")
  for _ in range(NUM_CHOICES[0] - 1):  # worker1 takes the interval's other trials
    trial = second.create_trial("worker1")
    oracle_lib.report(second, trial, remote_eval.trial_metrics(_Evaluator(), trial.hyperparameters.values))
  assert second.create_trial("worker1").status == "IDLE"  # the last trial is leased
  time.sleep(0.6)
  return first, taken, second, second.create_trial("worker1")


def test_a_trial_held_past_its_lease_goes_to_the_next_worker_and_the_late_report_is_ignored(served):
  oracle, work_dir = served
  hung, taken, alive, again = _lease_expired(oracle, work_dir)
  assert again.trial_id == taken.trial_id and oracle.expired_leases == 1
  evaluator = _Evaluator()
  for client, trial, bonus in ((alive, again, 0.0), (hung, taken, 1.0)):
    metrics = remote_eval.trial_metrics(evaluator, trial.hyperparameters.values)
    oracle_lib.report(client, trial, {k: v + bonus for k, v in metrics.items()})
  assert oracle.late_reports == 1 and oracle.end_order[-1] == taken.trial_id
  assert len(oracle.end_order) == len(set(oracle.end_order)) == NUM_CHOICES[0]
  first = remote_eval.trial_metrics(_Evaluator(), taken.hyperparameters.values)
  candidate = oracle_lib.candidate_of(taken.hyperparameters.values)
  assert oracle.history[0]["potentials"][candidate[0]] == first[oracle_lib.POTENTIAL]


def test_the_first_report_counts_even_from_a_worker_whose_lease_ended(served):
  oracle, work_dir = served
  slow, trial, other, rerun = _lease_expired(oracle, work_dir)
  assert rerun.trial_id == trial.trial_id  # the lease ended: handed out again
  for client, held in ((slow, trial), (other, rerun)):
    oracle_lib.report(client, held, remote_eval.trial_metrics(_Evaluator(), held.hyperparameters.values))
  assert len(oracle.history) == 1 and oracle.late_reports == 1 and not oracle.ongoing_trials


def test_a_bad_report_fails_for_its_sender_only_and_the_chief_keeps_serving(served):
  oracle, work_dir = served
  _open_interval(oracle, work_dir)
  client, _ = remote_eval.connect(5)
  trial = client.create_trial("worker0")
  with pytest.raises(grpc.RpcError):
    client.update_trial("no-such-trial", {"potential": 1.0})
  assert client.get_trial(trial.trial_id).trial_id == trial.trial_id
  assert client.create_trial("worker1").status == "RUNNING"  # answered: the Oracle's lock was released


def test_a_second_chief_on_a_taken_port_is_refused(served, tmp_path):
  oracle, _ = served
  address = f"127.0.0.1:{os.environ['KERASTUNER_ORACLE_PORT']}"
  with pytest.raises(errors.UserError, match="port is taken"):
    with remote_eval.serving(oracle, remote_eval.ServeSettings(address)):
      pass


def test_worker_exits_cleanly_when_no_chief_answers(tmp_path, monkeypatch, capsys):
  for name, value in testing.kerastuner_env(testing.free_port(), "worker0").items():
    if name.startswith("KERASTUNER_"):
      monkeypatch.setenv(name, value)
  worker = remote_eval.Worker(str(tmp_path), _Evaluator, "worker0", rpc_timeout=0.5, connect_timeout=0.5)
  assert worker.run() == 0
  assert "is gone" in capsys.readouterr().out


def test_restored_oracle_hands_out_the_trials_that_were_out_again(tmp_path):
  oracle = _local_oracle(tmp_path / "a")
  oracle.start_interval(_completer)
  taken = oracle.create_trial("worker0")
  restored = _local_oracle(tmp_path / "b")
  restored.trials = dict(oracle.trials)
  restored.set_state(json.loads(json.dumps(oracle.get_state())))
  again = restored.create_trial("worker1")
  assert again.trial_id == taken.trial_id
  assert again.hyperparameters.values == taken.hyperparameters.values  # with the same completions


@pytest.mark.parametrize("env, message", [
    ({"KERASTUNER_TUNER_ID": "worker0"}, "the search is the chief"),
    ({"KERASTUNER_ORACLE_PORT": None}, "KERASTUNER_ORACLE_PORT"),
])
def test_chief_settings_errors_are_one_sentence(monkeypatch, env, message):
  for name, value in testing.kerastuner_env(8000, "chief").items():
    if name.startswith("KERASTUNER_"):
      monkeypatch.setenv(name, value)
  for name, value in env.items():
    if value is None:
      monkeypatch.delenv(name)
    else:
      monkeypatch.setenv(name, value)
  with pytest.raises(errors.UserError, match=message):
    remote_eval.serve_settings_from_env(600)


def test_no_kerastuner_settings_means_local_evaluation(monkeypatch):
  monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
  assert remote_eval.serve_settings_from_env(600) is None


def test_worker_with_the_chiefs_id_is_refused(monkeypatch):
  for name, value in testing.kerastuner_env(8000, "chief").items():
    if name.startswith("KERASTUNER_"):
      monkeypatch.setenv(name, value)
  with pytest.raises(errors.UserError, match="names the chief"):
    remote_eval.worker_id_from_env()


def test_worker_binary_given_the_chiefs_id_exits_non_zero_with_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "pcnas_tf.eval_worker_main", f"--work_dir={tmp_path}"],
      env=testing.kerastuner_env(testing.free_port(), "chief"), capture_output=True, text=True,
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: KERASTUNER_TUNER_ID is 'chief'")


@pytest.mark.slow
@pytest.mark.multiworker  # several processes: `make test-multiworker`
def test_chief_and_two_workers_a_trial_lost_mid_interval_give_the_single_process_pool(tmp_path):
  config = testing.tiny_search_config(str(tmp_path))
  reference = search_lib.run_search(config, str(tmp_path / "reference"), progress=False)
  # A worker takes the first trial and dies before it reports; the trial comes back when its lease
  # ends, and the two worker processes (or the chief, if none has asked within a lease) score it.
  run = testing.run_served_search(config, str(tmp_path / "served"), 2, lost_trial=True)
  assert run["chief_rc"] == 0, run["logs"]["chief"][-3000:]
  assert run["lost"] and all(rc == 0 for rc in run["worker_rcs"].values()), run["logs"]
  served = run["result"]
  assert served["final_pool"] == reference["final_pool"]
  # Compared as JSON text: potentials of infeasible candidates are NaN, and NaN != NaN.
  assert json.dumps(served["intervals"], sort_keys=True) == json.dumps(
      json.loads(json.dumps(reference["intervals"])), sort_keys=True)
  remote = served["remote_evaluation"]
  assert remote["expired_leases"] >= 1
  assert remote["scored"] == remote["trials"] == sum(len(r["candidates"]) for r in reference["intervals"])
  assert "lost-worker" not in remote["scored_by"] and {"worker0", "worker1"} & set(remote["scored_by"])
  assert any("the search is finished" in run["logs"][name] for name in run["worker_rcs"])
