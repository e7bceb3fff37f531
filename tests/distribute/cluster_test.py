"""Tests of multi-worker searches: TF_CONFIG roles, and two worker processes on 127.0.0.1.

The end-to-end tests start real MultiWorkerMirroredStrategy clusters of two CPU processes on loopback
ports and compare them with one process of two replicas (two logical CPUs, MirroredStrategy): with the
same seed and global batch every replica sees the same examples at every step in both layouts, so the
final pools must be equal, potentials included.
"""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest

from pcnas_tf.distribute import cluster
from pcnas_tf import errors
from tests import helpers as testing
from tests import local_cluster


def tf_config(task_type="worker", index=0, workers=2, chief=False):
  config = {"cluster": {"worker": [f"127.0.0.1:{2000 + i}" for i in range(workers)]},
            "task": {"type": task_type, "index": index}}
  if chief:
    config["cluster"]["chief"] = ["127.0.0.1:1999"]
  return {cluster.ENV: json.dumps(config)}


@pytest.mark.parametrize("environ, chief, tasks", [
    (tf_config("worker", 0), True, 2),
    (tf_config("worker", 1), False, 2),
    (tf_config("worker", 0, chief=True), False, 3),
    (tf_config("chief", 0, chief=True), True, 3),
])
def test_chief_is_the_chief_task_or_else_worker_zero(environ, chief, tasks):
  task = cluster.task_from_env(environ)
  assert task.is_chief == chief and task.num_tasks == tasks


@pytest.mark.parametrize("environ, message", [
    ({}, "needs the TF_CONFIG environment variable"),
    ({cluster.ENV: "{cluster:"}, "TF_CONFIG is not valid JSON"),
    ({cluster.ENV: '{"task": {"type": "worker"}}'}, 'needs a "cluster" and a "task"'),
    ({cluster.ENV: '{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps"}}'}, "roles \\['ps'\\] are not"),
    ({cluster.ENV: '{"cluster": {"worker": ["a"]}, "task": {"type": "worker"}}'}, "host:port"),
    ({cluster.ENV: '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief"}}'}, "type 'chief' is not"),
    ({cluster.ENV: '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}'},
     "index 1 is out of range; allowed for 'worker': 0..0"),
])
def test_missing_or_malformed_tf_config_is_one_clear_sentence(environ, message):
  with pytest.raises(errors.UserError, match=message):
    cluster.task_from_env(environ)


def test_multi_worker_search_without_tf_config_is_refused(tmp_path, monkeypatch):
  from pcnas_tf.searcher import loop as search_lib  # pylint: disable=g-import-not-at-top
  from pcnas_tf.searcher import search_config  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv(cluster.ENV, raising=False)
  config = dataclasses.replace(search_config.SearchConfig(), strategy="multi_worker")
  with pytest.raises(cluster.ClusterError, match="--strategy=multi_worker needs the TF_CONFIG"):
    search_lib.run_search(config, str(tmp_path), progress=False)


def test_only_the_chief_writes_to_the_work_dir(tmp_path):
  assert cluster.output_dir(str(tmp_path), cluster.Task()) == str(tmp_path)
  worker = cluster.output_dir(str(tmp_path), cluster.Task("worker", 1, 2))
  assert os.path.isdir(worker) and not worker.startswith(str(tmp_path))
  with open(os.path.join(worker, "left_by_a_killed_task"), "w") as f:
    f.write("x")
  # A restarted task gets the same directory, emptied; another task gets its own.
  assert cluster.output_dir(str(tmp_path), cluster.Task("worker", 1, 2)) == worker
  assert not os.listdir(worker)
  other = cluster.output_dir(str(tmp_path), cluster.Task("worker", 2, 3))
  assert other != worker
  cluster.remove_output_dir(other, str(tmp_path))
  cluster.remove_output_dir(worker, str(tmp_path))
  cluster.remove_output_dir(str(tmp_path), str(tmp_path))
  assert not os.path.exists(worker) and os.path.isdir(tmp_path)


def test_gather_returns_each_replicas_values():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rows = cluster.gather(tf.distribute.OneDeviceStrategy("/cpu:0"), [3, cluster.digest(["a", 1])])
  assert rows.shape == (1, 2) and rows[0, 0] == 3 and rows[0, 1] == cluster.digest(["a", 1])
  assert cluster.digest(["a", 1]) != cluster.digest(["a", 2]) and cluster.digest([1]) < 2 ** 53


# Two worker processes on 127.0.0.1 -------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The tiny search as one process of two replicas, and as two worker processes (never killed)."""
  root = tmp_path_factory.mktemp("multiworker")
  config = testing.tiny_search_config(str(root))
  single = testing.run_search_process(dataclasses.replace(config, strategy="mirrored"), root / "single")
  multi = dataclasses.replace(config, strategy="multi_worker")
  run = testing.run_search_cluster(multi, root / "multi", str(root / "logs"))
  assert run.codes == [0, 0], run.logs
  return {"config": multi, "root": root, "single": single, "workers": run.results}


def as_text(value):
  """JSON text, so that NaN potentials compare equal."""
  return json.dumps(value, sort_keys=True)


@pytest.mark.slow
@pytest.mark.multiworker
def test_two_workers_agree_on_every_path_and_match_one_process_of_two_replicas(runs):
  chief, worker = runs["workers"]
  assert chief["distribution"] == {"strategy": "multi_worker", "tasks": 2, "replicas": 2}
  assert runs["single"]["distribution"]["replicas"] == 2
  # Every path either worker trained, in order (and checked at each epoch's end during the run).
  assert chief["paths_digest"] == worker["paths_digest"] == runs["single"]["paths_digest"]
  assert as_text(chief["final_pool"]) == as_text(worker["final_pool"])
  # Same examples per replica per step, two-value all-reduces: equal to the last bit.
  assert as_text(chief["final_pool"]) == as_text(runs["single"]["final_pool"])
  np.testing.assert_array_equal([e["loss"] for e in chief["log"]],
                                [e["loss"] for e in runs["single"]["log"]])
  work_dir = runs["root"] / "multi"
  assert sorted(n for n in os.listdir(work_dir) if n != ".lock") == [
      "checkpoints", "chosen_arch.png", "config.json", "oracle", "report.html", "search.png",
      "search_front.png", "search_result.json", "tensorboard"]
  assert testing.read_json(work_dir / "search_result.json")["final_pool"] == chief["final_pool"]


# The tiny search's checkpoints: 1-2 warm-up, 3 the first interval's potentials, 4-5 its training epoch,
# 6 the second interval's potentials, which both tasks score between them (a cluster scores an interval
# as one group). Worker 1 dies once checkpoint 3 exists (mid interval 1, see search_lib_test), or once 5
# does, so that the chief meets its death at the evaluation's collective (or, if it got there first,
# at the next one, the pool's agreement check); it fails there instead of hanging.
@pytest.mark.slow
@pytest.mark.multiworker
@pytest.mark.parametrize("checkpoint, name", [(3, "killed"), (5, "killed_in_evaluation")])
def test_worker_killed_after_a_checkpoint_the_restarted_cluster_loses_nothing(runs, checkpoint, name):
  root, work_dir = runs["root"], runs["root"] / name
  killed = testing.run_search_cluster(runs["config"], work_dir, str(root / f"{name}_logs"),
                                     kill_after_checkpoint=checkpoint)
  assert killed.codes[0] == 2 and killed.codes[1] != 0, killed.logs
  assert "lost contact with the cluster" in killed.logs
  assert "resume from the newest checkpoint" in killed.logs
  restarted = testing.run_search_cluster(runs["config"], work_dir, str(root / f"{name}_restarted_logs"))
  assert restarted.codes == [0, 0], restarted.logs
  assert "lost contact" not in restarted.logs
  resumed, reference = restarted.results, runs["workers"][0]
  for result in resumed:
    assert result["paths_digest"] == reference["paths_digest"]
    assert as_text(result["final_pool"]) == as_text(reference["final_pool"])
    assert as_text(result["final_pool"]) == as_text(runs["single"]["final_pool"])
    assert as_text(result["intervals"]) == as_text(reference["intervals"])
  assert [e["loss"] for e in resumed[0]["log"]] == [e["loss"] for e in reference["log"]]


@pytest.mark.slow
@pytest.mark.multiworker
def test_two_workers_retrain_an_architecture_and_only_the_chief_keeps_files(runs):
  root = runs["root"]
  # 127 validation images: shards of 64 and 63, so with 21 images per replica one worker has a batch
  # more than the other, and gets an empty batch while the other finishes.
  argv = [sys.executable, "-m", "pcnas_tf.train_main", f"--space={root / 'tiny_space.json'}",
          "--arch=120", f"--data_dir={runs['config'].data.data_dir}", "--resolution=8",
          "--validation=127", "--epochs=1", "--steps_per_epoch=2", "--batch_size=16",
          "--eval_batch_size=42", "--nose", "--strategy=multi_worker", f"--work_dir={root / 'train'}",
          "--noprogress", "--collective_timeout_s=60"]
  with local_cluster.LocalCluster(argv, 2, str(root / "train_logs"), cwd=testing.REPO) as workers:
    codes = workers.wait(testing.CLUSTER_TIMEOUT_S)
  assert codes == [0, 0], workers.logs()
  result = testing.read_json(root / "train" / "train_result.json")
  assert result["test_images"] == 100 and len(result["log"]) == 1
  assert sorted(n for n in os.listdir(root / "train") if n != ".lock") == [
      "checkpoints", "config.json", "model.keras", "tensorboard", "train_result.json"]


@pytest.mark.slow
@pytest.mark.multiworker
def test_two_training_tasks_and_an_evaluation_worker_form_the_one_process_pool(runs):
  root = runs["root"]
  # The other training task waits 0.5 s before each trial it scores, so the evaluation worker (polling
  # every 0.2 s once it is up) gets some of them too.
  run = testing.run_search_cluster(runs["config"], root / "served", str(root / "served_logs"), eval_workers=1,
                                   pull_delay_s=0.5)
  assert run.codes == [0, 0], run.logs
  chief, worker = run.results
  assert chief["paths_digest"] == worker["paths_digest"] == runs["single"]["paths_digest"]
  assert as_text(chief["final_pool"]) == as_text(worker["final_pool"]) == as_text(runs["single"]["final_pool"])
  assert as_text(chief["intervals"]) == as_text(runs["workers"][0]["intervals"])
  remote = chief["remote_evaluation"]
  assert remote["scored"] == remote["trials"] == sum(len(r["candidates"]) for r in chief["intervals"])
  # The chief serves and waits; the other training task and the evaluation worker pull the trials.
  assert set(remote["scored_by"]) <= {"task:worker-1", "eval0", "chief"}
  assert sum(remote["scored_by"].values()) == remote["scored"]
  assert "eval0" in remote["scored_by"] and "the search is finished" in run.logs
