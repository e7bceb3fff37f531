"""Tests of the ranking study: correlations, architecture choice, inherited weights, end to end, CLI."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcnas_tf import errors
from pcnas_tf.nn import model as model_lib
from pcnas_tf.studies import rank_check as rank_lib
from pcnas_tf.constraints import sampling
from pcnas_tf.nn import supergraph as supergraph_lib
from tests import helpers as testing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Costs of the tiny space's (3, 3, 2) choices; a budget of 3 leaves 14 of the 18 paths feasible.
COSTS = ((0, 1, 2), (0, 1, 2), (0, 1))
BUDGET = 3


@pytest.fixture
def sampler():
  return sampling.FeasibleSampler(sampling.CostTable.from_costs(COSTS, resolution=1), BUDGET)


def _search_result(candidates, pool):
  space = testing.tiny_space()
  return {"space": space.to_json(), "intervals": [{"candidates": [list(c) for c in candidates]}],
          "final_pool": [{"arch": list(space.arch_from_indices(m))} for m in pool]}


@pytest.mark.parametrize("accuracies, expected", [
    ([0.1, 0.2, 0.3, 0.4], 1.0),
    ([0.4, 0.3, 0.2, 0.1], -1.0),
])
def test_correlations_of_a_perfect_and_a_reversed_ranking(accuracies, expected):
  figures = rank_lib.correlations(accuracies, [0.5, 0.6, 0.7, 0.8])
  assert set(figures) == {"pearson", "spearman", "kendall"}
  for value in figures.values():
    assert value == pytest.approx(expected)


def test_correlations_of_a_constant_list_are_nan_not_an_error():
  assert all(math.isnan(v) for v in rank_lib.correlations([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]).values())


def test_pool_archs_are_the_feasible_final_candidates_first_then_distinct_feasible_mutations(sampler):
  candidates = [(0, 0, 0), (0, 0, 1), (2, 2, 1), (2, 1, 0)]  # (2, 2, 1) costs 5 > 3: infeasible
  result = _search_result(candidates, pool=[(0, 0, 0), (0, 0, 1)])
  archs = rank_lib.select_archs(result, sampler, 6, "pool", np.random.default_rng(0))
  assert len(archs) == 6 and len(set(archs)) == 6
  assert all(sampler.is_feasible(a) for a in archs)
  assert set(archs[:3]) == {(0, 0, 0), (0, 0, 1), (2, 1, 0)}


@pytest.mark.parametrize("source", ["pool", "random"])
def test_all_feasible_archs_can_be_asked_for_but_not_one_more(sampler, source):
  result = _search_result([(0, 0, 0)], pool=[(0, 0, 0)])
  archs = rank_lib.select_archs(result, sampler, sampler.count(), source, np.random.default_rng(1))
  assert len(set(archs)) == sampler.count() == 14 and all(sampler.is_feasible(a) for a in archs)
  with pytest.raises(errors.UserError, match="Only 14 architectures fit the budget"):
    rank_lib.select_archs(result, sampler, 15, source, np.random.default_rng(1))


@pytest.mark.parametrize("bn_mode, training", [("moving", False), ("batch", True)])
def test_inherited_weights_score_like_the_supergraphs_own_path(bn_mode, training):
  keras.utils.set_random_seed(0)
  space, path = testing.tiny_space(), (1, 2, 1)
  supergraph = supergraph_lib.Supergraph(space, (8, 8, 3), 10)
  arch = space.arch_from_indices(path)
  model = model_lib.inherit_weights(supergraph, arch, model_lib.build_model(arch, space, (8, 8, 3), 10))
  images = tf.random.stateless_normal((32, 8, 8, 3), seed=(1, 2))
  predictions = tf.argmax(model(images, training=training), -1, output_type=tf.int32).numpy()
  labels = np.where(np.arange(32) < 8, (predictions + 1) % 10, predictions)  # 24 of 32 right
  accuracy = rank_lib.supergraph_accuracies(supergraph, [(images, tf.constant(labels))], [path], bn_mode)
  assert accuracy == [pytest.approx(0.75)]


@pytest.mark.parametrize("change, message", [
    ({"num_archs": 100}, r"Only \d+ architectures fit the budget; ask for at most that many"),
    ({"search": {"eval_batch_size": 128, "eval_batches": 2}}, "128 x 2 batches needs 256 images"),
    ({"search": {"batch_size": 1000, "steps_per_epoch": 0}}, "Batch size 1000 is larger than the 472"),
])
def test_bad_input_is_refused_before_any_search_or_write(tmp_path, monkeypatch, change, message):
  monkeypatch.setattr(rank_lib.search_lib, "run_search", lambda *a, **k: pytest.fail("a search ran"))
  config = rank_lib.RankConfig(testing.tiny_search_config(str(tmp_path)), num_archs=4)
  if "search" in change:
    change = {"search": dataclasses.replace(config.search, **change["search"])}
  with pytest.raises(errors.UserError, match=message):
    rank_lib.run_rank_check(dataclasses.replace(config, **change), str(tmp_path / "run"),
                            progress=False)
  assert not (tmp_path / "run").exists()


def test_a_given_search_of_other_settings_is_refused_naming_them(tmp_path):
  config = rank_lib.RankConfig(testing.tiny_search_config(str(tmp_path)), num_archs=4)
  other = dataclasses.replace(config.search, budget="0.4", data=dataclasses.replace(
      config.search.data, resolution=16, data_dir="/elsewhere"))
  for name, search in (("same", config.search), ("other", other)):
    os.makedirs(tmp_path / name)
    with open(tmp_path / name / rank_lib.search_lib.RESULT_FILE, "w") as f:
      json.dump({"config": search.to_json()}, f)
  dataclasses.replace(config, pcnas_dir=str(tmp_path / "same")).validate()  # data_dir may differ
  with pytest.raises(errors.UserError, match=r"--oneshot_dir=.*other was searched with other settings "
                     r"than this rank check \(budget was '0.4', now '0.6'; data.resolution was 16, now 8\)"):
    dataclasses.replace(config, oneshot_dir=str(tmp_path / "other")).validate()


@pytest.fixture(scope="module")
def tiny_rank(tmp_path_factory):
  root = tmp_path_factory.mktemp("rank")
  config = rank_lib.RankConfig(testing.tiny_search_config(str(root)), num_archs=4, standalone_epochs=1)
  return config, str(root / "run"), rank_lib.run_rank_check(config, str(root / "run"), progress=False)


@pytest.mark.slow
def test_rank_check_writes_correlations_of_both_supergraphs_and_a_plot(tiny_rank):
  _, work_dir, result = tiny_rank
  assert result["num_archs"] == 4 and len({a["arch_string"] for a in result["archs"]}) == 4
  for name in ("pcnas", "oneshot"):
    for mode in ("batch", "moving"):
      assert set(result["correlations"][name][mode]) == {"pearson", "spearman", "kendall"}
      assert all(0 <= a["supergraph"][name][mode] <= 1 for a in result["archs"])
  assert all(0 <= a["standalone_top1"] <= 1 for a in result["archs"])
  with open(os.path.join(work_dir, "rank_result.json")) as f:
    assert set(json.load(f)) >= {"archs", "correlations", "bn_mode", "source", "timings", "config"}
  assert os.path.getsize(os.path.join(work_dir, "rank.png")) > 0


@pytest.mark.slow
def test_given_search_dirs_are_reused_and_score_the_same(tiny_rank, tmp_path):
  config, work_dir, first = tiny_rank
  config = dataclasses.replace(config, pcnas_dir=os.path.join(work_dir, "pcnas"),
                               oneshot_dir=os.path.join(work_dir, "oneshot"))
  again = rank_lib.run_rank_check(config, str(tmp_path), progress=False)
  assert not os.path.exists(tmp_path / "pcnas") and not os.path.exists(tmp_path / "oneshot")
  assert [a["supergraph"] for a in again["archs"]] == [a["supergraph"] for a in first["archs"]]


@pytest.mark.parametrize("flag, message", [
    ("--num_archs=1", "error: Number of architectures K (--num_archs) is 1; it must be at least 2 to rank."),
    ("--archs=best", "error: Architecture source 'best' (--archs) is unknown; allowed: pool, random."),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, flag, message):
  result = subprocess.run([sys.executable, "-m", "pcnas_tf.rank_check_main", flag, f"--work_dir={tmp_path}"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == message and "Traceback" not in result.stderr
