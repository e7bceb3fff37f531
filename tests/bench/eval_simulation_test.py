"""Tests of the many-worker simulation on tiny shapes: its pool is the one computed directly, and every
trial is scored once, by sleeping workers in another process that never import TensorFlow."""

# The real keras-tuner in this process, before `bench.no_tensorflow` (imported by the simulation) could
# register its bare packages and leave the other tests of the session a keras-tuner without tuners.
import keras_tuner  # pylint: disable=unused-import

from bench import eval_simulation as sim
from pcnas_tf.searcher import pool as pool_lib

SAMPLES, TRIAL_COMPLETIONS, MIXOPS = 7, 3, 3  # chunks of 3, 3 and 1: 50 candidates x 3 = 150 trials


def test_two_workers_form_the_directly_computed_pool_and_score_every_trial_once(tmp_path):
  result = sim.simulate(str(tmp_path), 2, SAMPLES, TRIAL_COMPLETIONS, per_completion_s=0.0005, processes=1,
                        poll_interval=0.01, num_mixops=MIXOPS, timeout=120)
  assert len(result["history"]) == 2  # interval 0 in the chief's process, interval 1 by the workers
  assert result["interval_trials"] == result["trials_scored"] == 150
  assert sum(result["scored"]) == 150 and len(result["scored"]) == 2
  assert sim.scored_once(result)
  assert sim.pools_equal(result, SAMPLES)
  assert result["completions"] == 50 * SAMPLES
  assert not result["tensorflow"]


def test_the_direct_pool_is_the_top_p_of_the_known_scores():
  num_choices = (sim.NUM_CHOICES,) * MIXOPS
  complete = sim.completer(num_choices, SAMPLES)
  assert complete((3,)) == complete((3,)) and len(complete((3,))) == SAMPLES  # the same paths every time
  (pool, scores), _ = sim.direct_history(num_choices, sim.POOL_SIZE, complete, 2)
  correct = [sum(map(sim.correct_of, complete((c,)))) for c in range(sim.NUM_CHOICES)]
  assert scores == [n / (sim.BATCH * SAMPLES) for n in correct]
  assert pool == [list(m) for m in pool_lib.top_p([(c,) for c in range(sim.NUM_CHOICES)], scores,
                                                  sim.POOL_SIZE)]


def test_a_bounded_run_of_one_worker_counts_what_it_scored(tmp_path):
  result = sim.simulate(str(tmp_path), 1, SAMPLES, TRIAL_COMPLETIONS, per_completion_s=0.0005,
                        processes=1, trial_limit=5, poll_interval=0.01, num_mixops=MIXOPS, timeout=120)
  assert 5 <= result["trials_scored"] < result["interval_trials"]
  assert sim.scored_once(result)  # stopped mid-interval: what it took, it reported


def test_the_chiefs_cost_per_trial_is_measured_in_process_and_through_grpc(tmp_path):
  for grpc_client in (False, True):
    per_trial_ms, close_ms = sim.oracle_cost(str(tmp_path), SAMPLES, TRIAL_COMPLETIONS, grpc_client)
    assert per_trial_ms > 0 and close_ms > 0
