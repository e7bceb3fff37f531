"""End-to-end tests of the search on a tiny space and a slice of Fashion-MNIST."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pcnas_tf.training import workdir

from pcnas_tf.training import checkpoint
from pcnas_tf import errors
from pcnas_tf.searcher import baselines as evolution
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.searcher import oracle as oracle_lib
from pcnas_tf.searcher import search_config
from pcnas_tf.space import cost as cost_lib
from pcnas_tf.space import search_space as space_lib
from tests import helpers as testing
from pcnas_tf.training import epochs
from pcnas_tf.training import optimizer_config
from pcnas_tf.training import supergraph_trainer as trainer_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
  return testing.tiny_search_config(str(tmp_path_factory.mktemp("search")))


def test_search_writes_a_final_pool_within_budget_and_its_pictures(tiny_config, tmp_path):
  result = search_lib.run_search(tiny_config, str(tmp_path), progress=False)
  pool = result["final_pool"]
  assert 1 <= len(pool) <= 2 and result["chosen"] == pool[0]
  assert all(len(member["arch"]) == 3 for member in pool)
  assert all(member["predicted_flops"] <= result["constraint"]["budget"] for member in pool)
  assert [m["potential"] for m in pool] == sorted((m["potential"] for m in pool), reverse=True)
  assert len(result["intervals"]) == 3 and len(result["log"]) == 1 + 3
  for name in ("search_result.json", "search.png", "search_front.png", "chosen_arch.png", "report.html",
               "config.json"):
    assert os.path.getsize(tmp_path / name) > 0
  assert result["chosen"]["arch_string"] in (tmp_path / "report.html").read_text()
  assert all(len(r["candidate_costs"]) == len(r["candidates"]) for r in result["intervals"])
  assert any(f.startswith("events") for f in os.listdir(tmp_path / "tensorboard"))
  with open(tmp_path / "search_result.json") as f:
    assert json.load(f)["chosen"]["arch_string"] == result["chosen"]["arch_string"]


@pytest.mark.parametrize("training, search", [("oneshot", "ea"), ("oneshot", "pcnas")])
def test_paper_ablations_one_shot_training_with_ea_or_pool_search(tiny_config, tmp_path, training, search):
  config = dataclasses.replace(tiny_config, training=training, search=search)
  result = search_lib.run_search(config, str(tmp_path), progress=False)
  assert all(log["phase"] == "warmup" for log in result["log"])  # uniform paths, no shrinking
  assert len(result["log"]) == 1 + 3 and result["search"]["method"] == search
  budget = evolution.progressive_evaluations((3, 3, 2), config.pool_size, config.num_samples)
  if search == "ea":
    assert result["search"]["evaluations"] == budget and not result["intervals"]
    scores = [m["potential"] for m in result["final_pool"]]
    assert scores == sorted(scores, reverse=True) and len({m["arch_string"] for m in result["final_pool"]}) == len(scores)
  else:
    assert len(result["intervals"]) == 3
  assert all(m["predicted_flops"] <= result["constraint"]["budget"] for m in result["final_pool"])


def test_an_interval_stopped_before_its_report_is_reported_when_the_search_resumes(tiny_config, tmp_path,
                                                                                  monkeypatch):
  """A stop after the interval's last checkpoint and before its HParams, scalars and page are written
  (what SIGKILL can do) loses none of them: the resumed search writes them first."""
  log_interval = search_lib.Search._log_interval

  def stop_at_the_last(search):
    if len(search.oracle.history) == search.space.num_layers:
      raise KeyboardInterrupt("stopped before the report")
    log_interval(search)

  monkeypatch.setattr(search_lib.Search, "_log_interval", stop_at_the_last)
  with pytest.raises(KeyboardInterrupt):
    search_lib.run_search(tiny_config, str(tmp_path), progress=False)
  last = tmp_path / "tensorboard" / "candidates" / "mixop_03"
  assert not last.exists()
  monkeypatch.setattr(search_lib.Search, "_log_interval", log_interval)
  result = search_lib.run_search(tiny_config, str(tmp_path), progress=False)
  record = result["intervals"][-1]
  assert "pool_costs" in record and len(record["candidate_costs"]) == len(record["candidates"])
  assert all(costs for costs, potential in zip(record["candidate_costs"], record["potentials"])
             if potential == potential)  # the completions' costs, from the checkpoint (NaN: none drawn)
  assert sorted(os.listdir(last)) == sorted("".join(map(str, c)) for c in record["candidates"])
  assert "Mixop 3:" in (tmp_path / "report.html").read_text()


def test_second_search_on_a_locked_work_dir_is_refused(tiny_config, tmp_path):
  search_lib.prepare_work_dir(str(tmp_path), tiny_config, overwrite=False)
  with workdir.WorkDirLock(str(tmp_path)):
    with pytest.raises(errors.UserError, match="in use by another run"):
      search_lib.run_search(tiny_config, str(tmp_path), progress=False)


def test_work_dir_of_another_config_is_refused_unless_overwritten(tiny_config, tmp_path):
  search_lib.prepare_work_dir(str(tmp_path), tiny_config, overwrite=False)
  checkpoint.save(str(tmp_path / "checkpoints"), 1, {}, {})  # trained state
  other = dataclasses.replace(tiny_config, pool_size=3)
  with pytest.raises(errors.UserError, match="pool_size was 2, now 3.*--overwrite"):
    search_lib.prepare_work_dir(str(tmp_path), other, overwrite=False)
  search_lib.prepare_work_dir(str(tmp_path), other, overwrite=True)


def test_work_dir_without_trained_state_is_taken_over_by_another_config(tiny_config, tmp_path):
  search_lib.prepare_work_dir(str(tmp_path), dataclasses.replace(tiny_config, pool_size=3), False)
  (tmp_path / "tensorboard").mkdir()
  search_lib.prepare_work_dir(str(tmp_path), tiny_config, overwrite=False)
  assert testing.read_json(tmp_path / "config.json")["pool_size"] == 2
  assert not (tmp_path / "tensorboard").exists()


@pytest.fixture(name="no_training")
def no_training_fixture(monkeypatch):
  """Makes the first training step of a search fail the test."""
  def train_step(*args):
    raise AssertionError("a training step ran before the run was rejected")
  monkeypatch.setattr(trainer_lib.SupergraphTrainer, "train_step", train_step)


@pytest.fixture(name="no_costs")
def no_costs_fixture(monkeypatch, no_training):
  """Makes building the constraint (a latency table for latency) fail the test, and any training."""
  def build(*args, **kwargs):
    raise AssertionError("the constraint was built before the data sizes were checked")
  monkeypatch.setattr(search_lib.constraint_lib, "build", build)


@pytest.mark.parametrize("change, message", [
    ({"eval_batch_size": 64, "eval_batches": 4},
     r"Validation batch size 64 x 4 batches needs 256 images but the validation carve-out holds 128: "
     r"use at most 128 images in 2 batches of 64 \(--eval_batch_size=64 --eval_batches=2\), or "
     r"--validation=256 for 4 batches of 64\.$"),
    ({"eval_batch_size": 256, "eval_batches": 1},
     r"batch size 256 x 1 batch needs 256 .* holds 128: use at most 128 images in 1 batch"),
    ({"steps_per_epoch": 0, "batch_size": 1000},
     r"Batch size 1000 is larger than the 472 training images; use at most 472"),
    ({"data": {"resolution": 1}}, r"Resolution 1 is smaller than the network's total stride 2"),
])
def test_data_that_does_not_fit_is_refused_before_costs_training_or_writing(
    tiny_config, tmp_path, no_costs, change, message):
  if "data" in change:
    change = {"data": dataclasses.replace(tiny_config.data, **change["data"])}
  work_dir = tmp_path / "run"
  with pytest.raises(errors.UserError, match=message):
    search_lib.run_search(dataclasses.replace(tiny_config, **change), str(work_dir), progress=False)
  assert not work_dir.exists()


def test_budget_below_the_costs_is_refused_before_training_or_writing(tiny_config, tmp_path,
                                                                      no_training):
  with pytest.raises(errors.UserError, match=r"below the minimum achievable flops"):
    search_lib.run_search(dataclasses.replace(tiny_config, budget="1000"), str(tmp_path / "run"),
                          progress=False)
  assert not (tmp_path / "run").exists()


def test_corrected_command_runs_in_the_work_dir_of_a_rejected_one(tiny_config, tmp_path):
  work_dir = str(tmp_path / "run")
  rejected = dataclasses.replace(tiny_config, eval_batch_size=128, eval_batches=2)
  with pytest.raises(errors.UserError, match="128 x 2 batches needs 256 images"):
    search_lib.run_search(rejected, work_dir, progress=False)
  corrected = dataclasses.replace(rejected, eval_batch_size=64)
  assert search_lib.run_search(corrected, work_dir, progress=False)["final_pool"]


def test_rejected_overwrite_keeps_the_earlier_search(tiny_config, tmp_path, no_costs):
  search_lib.prepare_work_dir(str(tmp_path), tiny_config, overwrite=False)
  checkpoint.save(str(tmp_path / "checkpoints"), 1, {}, {})
  with pytest.raises(errors.UserError, match="needs 256 images"):
    search_lib.run_search(dataclasses.replace(tiny_config, eval_batch_size=128), str(tmp_path),
                          overwrite=True, progress=False)
  assert checkpoint.has_checkpoints(str(tmp_path / "checkpoints"))
  assert testing.read_json(tmp_path / "config.json") == json.loads(json.dumps(tiny_config.to_json()))


def test_eval_worker_checks_its_copy_of_the_data_before_building_the_supergraph(tiny_config,
                                                                               monkeypatch):
  from pcnas_tf.searcher import remote_eval  # pylint: disable=g-import-not-at-top
  from pcnas_tf.nn import supergraph as supergraph_lib  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(supergraph_lib, "Supergraph", lambda *a, **k: pytest.fail("built"))
  data = dataclasses.replace(tiny_config.data, validation=40)  # this machine's data: fewer images
  with pytest.raises(errors.UserError, match="32 x 2 batches needs 64 images but the validation "
                     "carve-out holds 40"):
    remote_eval.worker_evaluator(dataclasses.replace(tiny_config, data=data))


@pytest.mark.parametrize("change, message", [
    ({"checkpoint_every": 0}, r"Checkpoint interval \(--checkpoint_every\) is 0; it must be at least 1"),
    ({"budget": "fast"}, r"Cannot read flops budget 'fast'"),
    ({"budget": "1.5ms"}, r"Cannot read flops budget '1.5ms'"),
    ({"budget": "150%"}, r"Budget '150%' is outside the fractions 0 to 1 \(0% to 100%\) of the space's range"),
    ({"constraint": "energy"}, r"Constraint 'energy' is unknown; allowed: latency, flops, params"),
    ({"constraint": "latency", "latency_backend": "gpu"}, r"Latency backend 'gpu' is unknown"),
    ({"latency_batch": 0}, r"Latency batch \(--latency_batch\) is 0"),
])
def test_settings_are_refused_before_the_data_is_read(tiny_config, tmp_path, no_costs, monkeypatch,
                                                      change, message):
  def load(*args, **kwargs):
    raise AssertionError("the data was read before the settings were checked")
  monkeypatch.setattr(search_lib.data_sources, "load", load)
  with pytest.raises(errors.UserError, match=message):
    search_lib.run_search(dataclasses.replace(tiny_config, **change), str(tmp_path / "run"),
                          progress=False)
  assert not (tmp_path / "run").exists()


def test_unusable_work_dir_is_refused_before_the_data_is_read(tiny_config, tmp_path, monkeypatch):
  monkeypatch.setattr(search_lib.data_sources, "load", lambda *a, **k: pytest.fail("data was read"))
  (tmp_path / "file").write_text("")
  for work_dir, message in ((tmp_path / "file", "exists and is not a directory"),
                            (tmp_path / "file" / "run", "Cannot create work directory .* is a file")):
    with pytest.raises(errors.UserError, match=message):
      search_lib.run_search(tiny_config, str(work_dir), progress=False)


@pytest.mark.parametrize("change, message", [
    ({"pool_size": 0}, "Pool size P .* is 0; it must be at least 1"),
    ({"num_samples": 0}, "Evaluation number S .* is 0"),
    ({"warmup_epochs": -1}, "Warm-up epochs Tw .* is -1"),
    ({"interval_epochs": -2}, "Interval epochs Ti .* is -2"),
    ({"space": "medium"}, "Unknown search space 'medium'"),
    ({"sampling": "greedy"}, "Sampling 'greedy' is unknown"),
    ({"search": "bayes"}, "Search 'bayes' is unknown; allowed: pcnas, ea, random"),
])
def test_bad_settings_are_one_clear_sentence(tiny_config, change, message):
  with pytest.raises(errors.UserError, match=message):
    dataclasses.replace(tiny_config, **change).validate()


def test_budget_below_the_cheapest_architecture_states_the_minimum(tiny_config, tmp_path):
  config = dataclasses.replace(tiny_config, budget="1000")
  with pytest.raises(errors.UserError, match=r"below the minimum achievable flops of this space, \d+ FLOPs"):
    search_lib.run_search(config, str(tmp_path), progress=False)


def test_unwritable_work_dir_is_refused(tiny_config, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(errors.UserError, match="Cannot create work directory"):
    search_lib.prepare_work_dir(str(blocker / "run"), tiny_config, overwrite=False)


def test_diverging_loss_stops_with_a_clear_error_and_keeps_checkpoints(tiny_config, tmp_path):
  config = dataclasses.replace(tiny_config, optimizer=optimizer_config.OptimizerConfig(1e12, 1e12))
  with pytest.raises(epochs.DivergedError, match="last good checkpoint"):
    search_lib.run_search(config, str(tmp_path), progress=False)


def test_cli_bad_flag_exits_non_zero_with_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "pcnas_tf.search_main", "--pool_size=0", f"--work_dir={tmp_path}"],
      capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      "error: Pool size P (--pool_size) is 0; it must be at least 1.")
  assert "Traceback" not in result.stderr


_RUNNER = textwrap.dedent('''
    import json, sys

    from pcnas_tf.searcher import loop as search_lib
    from pcnas_tf.searcher import search_config
    fields = json.loads(sys.argv[2])
    search_lib.run_search(search_config.SearchConfig.from_json(fields), sys.argv[1], progress=False)
''')


def _start(config, work_dir):
  return subprocess.Popen([sys.executable, "-c", _RUNNER, work_dir, json.dumps(config.to_json())],
                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_after_checkpoint(config, work_dir, number, timeout=300):
  process, deadline = _start(config, work_dir), time.time() + timeout
  target = os.path.join(work_dir, "checkpoints", f"ckpt-{number:08d}")
  while not os.path.exists(target) and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()


@pytest.mark.slow
def test_search_killed_in_warmup_training_and_evaluation_resumes_to_the_same_pool(tiny_config, tmp_path):
  reference = search_lib.run_search(tiny_config, str(tmp_path / "reference"), progress=False)
  work_dir = str(tmp_path / "killed")
  # Checkpoints of this config: 1 mid warm-up, 4 mid interval-1 training, 6 between interval-2 trials.
  for number in (1, 4, 6):
    _kill_after_checkpoint(tiny_config, work_dir, number)
  process = _start(tiny_config, work_dir)
  _, stderr = process.communicate(timeout=600)
  assert process.returncode == 0, stderr[-2000:]
  with open(os.path.join(work_dir, "search_result.json")) as f:
    resumed = json.load(f)
  assert resumed["final_pool"] == reference["final_pool"]
  # Compared as JSON text: potentials of infeasible candidates are NaN, and NaN != NaN.
  assert json.dumps(resumed["intervals"], sort_keys=True) == json.dumps(
      json.loads(json.dumps(reference["intervals"])), sort_keys=True)


def test_a_config_of_another_version_is_refused_in_one_sentence(tiny_config):
  fields = tiny_config.to_json()
  assert search_config.SearchConfig.from_json(fields) == tiny_config
  old = {k: v for k, v in fields.items() if k != "optimizer"} | {"learning_rate": 0.1}
  with pytest.raises(errors.UserError, match="written by another pcnas_tf version"):
    search_config.SearchConfig.from_json(old)


@pytest.mark.parametrize("tasks", [1, 2, 3, 5, 12])
def test_task_shares_partition_a_members_completions_at_their_own_indices_in_equal_ranges(tasks):
  lengths = (3, 0, 4, 2)
  trials = [{oracle_lib.COMPLETIONS: json.dumps([[i, j] for j in range(n)]), oracle_lib.FIRST: 10 * i}
            for i, n in enumerate(lengths)]
  scored, sizes = [], []
  for rank in range(tasks):
    shares = search_lib._shares(trials, rank, tasks)  # pylint: disable=protected-access
    sizes.append(0)
    for share in shares:
      paths = json.loads(share[oracle_lib.COMPLETIONS])
      scored += [(tuple(p), share[oracle_lib.FIRST] + k) for k, p in enumerate(paths)]
      sizes[-1] += len(paths)
  # Completion j of trial i is path [i, j] at index 10 i + j, scored by exactly one task.
  assert sorted(scored) == sorted(((i, j), 10 * i + j) for i, n in enumerate(lengths) for j in range(n))
  assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("tasks", [2, 3])
def test_weighted_task_shares_balance_the_estimated_cost_and_still_partition(tasks):
  # Trial 0's completions are ten times dearer than trial 1's: equal counts would give task 0 most of
  # the cost; weighted ranges differ by at most one completion's weight.
  trials = [{oracle_lib.COMPLETIONS: json.dumps([[i, j] for j in range(12)]), oracle_lib.FIRST: 100 * i,
             oracle_lib.EXTEND: i} for i in range(2)]
  weight = lambda path, extend: 10.0 if extend == 0 else 1.0
  scored, costs = [], []
  for rank in range(tasks):
    shares = search_lib._shares(trials, rank, tasks, weight)  # pylint: disable=protected-access
    costs.append(0.0)
    for share in shares:
      paths = json.loads(share[oracle_lib.COMPLETIONS])
      scored += [(tuple(p), share[oracle_lib.FIRST] + k) for k, p in enumerate(paths)]
      costs[-1] += sum(weight(p, share[oracle_lib.EXTEND]) for p in paths)
  assert sorted(scored) == sorted(((i, j), 100 * i + j) for i in range(2) for j in range(12))
  assert max(costs) - min(costs) <= 10.0
  unweighted = [sum(weight(p, s[oracle_lib.EXTEND]) for s in search_lib._shares(trials, r, tasks)
                    for p in json.loads(s[oracle_lib.COMPLETIONS])) for r in range(tasks)]
  assert max(unweighted) - min(unweighted) > 10.0  # the weights are what balanced them


def test_suffix_flops_counts_only_the_mixops_after_the_extended_one_and_the_head(tiny_config):
  space = space_lib.get_space(tiny_config.space, tiny_config.width)
  weight = search_lib.suffix_flops(space, (8, 8, 3), 10)
  costs = cost_lib.layer_costs(space, (8, 8, 3))
  head = cost_lib.head_cost(space, (8, 8, 3), 10).flops
  last = space.num_layers - 1
  dearest = max(range(len(costs[last])), key=lambda c: costs[last][c].flops)
  path = [0] * space.num_layers
  assert weight(path, last) == head
  assert weight(path[:last] + [dearest], last - 1) == head + costs[last][dearest].flops
  # A changed mixop at or above `extend` does not change the weight.
  assert weight([dearest] + path[1:], 0) == weight(path, 0)
