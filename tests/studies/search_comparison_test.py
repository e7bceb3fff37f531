"""Tests of the search-quality study: its statistics on constructed inputs with known answers, the
judging of constructed runs, refusals, and one tiny study end to end."""

import dataclasses
import itertools
import json

import numpy as np
import pytest

from pcnas_tf import errors
from pcnas_tf.space import cost
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.studies import ground_truth
from pcnas_tf.studies import ground_truth_build
from pcnas_tf.studies import search_comparison as quality
from tests import helpers


def test_ranking_of_the_same_and_the_reversed_order():
  truth = np.arange(40.0)  # its top 10%: 4 networks
  same = quality.ranking(truth, truth * 3 + 1)
  assert same["kendall"] == pytest.approx(1) and same["spearman"] == pytest.approx(1)
  assert same["kendall_top"] == pytest.approx(1) and same["top10_overlap"] == 1
  reverse = quality.ranking(truth, -truth)
  assert reverse["kendall"] == pytest.approx(-1) and reverse["top10_overlap"] == 0
  # One swap among 4 networks: 5 of 6 pairs agree, tau = (5 - 1) / 6.
  assert quality.ranking([1, 2, 3, 4], [1, 2, 4, 3])["kendall"] == pytest.approx(4 / 6)
  assert np.isnan(quality.ranking([1, 2], [2, 1])["kendall"])


def test_top10_overlap_counts_shared_members():
  truth = np.arange(20.0)
  estimate = truth.copy()
  estimate[[19, 18, 17]] = -1  # three of the true top 10 fall out of the estimate's
  assert quality.ranking(truth, estimate)["top10_overlap"] == pytest.approx(0.7)


def test_regret_top_percent_and_standard_error():
  assert quality.regret([80.0, 85.0, 90.0], 85.0) == pytest.approx(5.0)
  assert quality.regret([80.0, 85.0, 90.0], 90.0) == 0
  assert quality.top_percent([80.0, 85.0, 90.0, 70.0], 85.0) == pytest.approx(25.0)
  assert quality.top_percent([80.0, 85.0, 90.0], 90.0) == 0
  mean, se = quality.mean_se([1.0, 2.0, 3.0])
  assert mean == 2 and se == pytest.approx(1 / np.sqrt(3))
  assert np.isnan(quality.mean_se([4.0])[1])


def test_random_alone_picks_the_best_by_validation_of_those_drawn():
  paths, validation = ["a", "b", "c", "d"], [1.0, 4.0, 3.0, 2.0]
  assert quality.random_alone_choice(paths, validation, 10, np.random.default_rng(0)) == "b"
  for seed in range(20):
    rng = np.random.default_rng(seed)
    drawn = np.random.default_rng(seed).choice(4, 2, replace=False)
    assert quality.random_alone_choice(paths, validation, 2, rng) == paths[max(drawn, key=lambda i: validation[i])]


def test_max_flops_path_is_the_brute_force_answer():
  space = space_lib.macro_space(0.25)
  shape = (14, 14, 3)

  def flops(path):
    return cost.arch_cost(space.arch_from_indices(path), space, shape, 10).flops

  everything = list(itertools.product(range(3), repeat=8))
  limit = np.median([flops(p) for p in everything])
  feasible = lambda path: flops(path) <= limit
  found = quality.max_flops_path(space, feasible, shape, 10)
  assert feasible(found)
  assert flops(found) == max(flops(p) for p in everything if feasible(p))


def _truth(accuracies, added=()):
  space = space_lib.macro_space(0.25)
  entries = {path: ground_truth.Entry(acc, (acc,), 1000 * i, 10, validation=acc - 1,
                                      drawn=path not in added)
             for i, (path, acc) in enumerate(accuracies.items())}
  return ground_truth.GroundTruth("constructed", space, entries, steps=100)


def test_judge_scores_constructed_runs_with_known_regrets():
  a, b, c, d, e = (0,) * 8, (1,) * 8, (2,) * 8, (1, 2) * 4, (2, 1) * 4
  # e was added on demand (a search chose it): the best known feasible network, not of the draw.
  truth = _truth({a: 80.0, b: 85.0, c: 95.0, d: 90.0, e: 92.0}, added=(e,))
  feasible = lambda path: tuple(path) != c  # the best network does not fit
  config = quality.StudyConfig(search=None, budgets=("0.5",), seeds=(0,), ranking_budget="0.5")
  runs = [{"method": "pcnas", "seed": 0, "budget": "0.5", "path": list(d)},
          {"method": "oneshot_ea", "seed": 0, "budget": "0.5", "path": list(b)},
          {"method": "oneshot_random", "seed": 0, "budget": "0.5", "path": list(a)}]
  oneshot = [{"seed": 0, "paths": [list(p) for p in (a, b, c, d)], "batch": [1, 2, 4, 3],
              "moving": [4, 3, 1, 2]}]
  candidates = [{"seed": 0, "paths": [list(a), list(b), list(d), list(c)],
                 "potentials": [0.1, 0.2, 0.3, float("nan")]}]
  feasibility = {(0, "0.5"): {"budget": 1.0, "unit": "ms", "is_feasible": feasible, "max_flops": list(d)}}
  result = quality.judge(config, truth, runs, oneshot, candidates, feasibility, supergraph_steps=250)
  regrets = {r["method"]: r["regret"] for r in result["rows"]}
  # Best feasible is e (92): PC-NAS (d) 2, One-Shot EA 7, random 12, max-FLOPs (d) 2; random alone: the
  # best by validation of 2 (= 250 // 100) of the drawn feasible networks a, b, d, never e.
  assert regrets["pcnas"] == 2 and regrets["oneshot_ea"] == 7 and regrets["oneshot_random"] == 12
  assert regrets["max_flops"] == 2 and result["random_alone_networks"] == 2
  assert regrets["random_alone"] in (2, 7)
  # top_percent counts the drawn feasible networks only: d beats none of a, b, d.
  assert result["summary"]["pcnas"]["top_percent"] == 0
  assert result["rankings"]["oneshot_batch"]["kendall"] == pytest.approx(1)
  assert result["rankings"]["oneshot_moving"]["kendall"] == pytest.approx(-1)
  # The infeasible candidate (NaN potential) is left out: a, b, d in order.
  assert result["rankings"]["pcnas_potentials"]["networks"] == 3
  assert result["rankings"]["pcnas_potentials"]["kendall"] == pytest.approx(1)
  assert result["summary"]["oneshot_random"]["top_percent"] == pytest.approx(200 / 3)


@pytest.fixture(name="tiny_study")
def fixture_tiny_study(tmp_path):
  table, build, search = helpers.tiny_macro_study(tmp_path)
  return table, build, quality.StudyConfig(search=search, budgets=("0.5",), seeds=(0,))


def test_a_search_on_other_data_than_the_table_is_refused(tiny_study, tmp_path):
  table, _, config = tiny_study
  other = dataclasses.replace(config, search=dataclasses.replace(
      config.search, data=dataclasses.replace(config.search.data, resolution=12)))
  with pytest.raises(errors.UserError, match="resolution 12 .table: 8"):
    quality.run_study(other, table, str(tmp_path / "study"), lambda archs: None, progress=False)


@pytest.mark.slow
def test_tiny_study_end_to_end_adds_chosen_networks_and_resumes(tiny_study, tmp_path):
  table, build, config = tiny_study
  train = helpers.FakeStandalone()
  add = lambda archs: ground_truth_build.add_networks(table, build, archs, train, progress=False)
  result = quality.run_study(config, table, str(tmp_path / "study"), add, progress=False)
  truth = ground_truth.load(table)
  for row in result["rows"]:  # every chosen network has its ground truth now
    assert truth.entry(row["path"]) is not None and row["regret"] >= 0
  assert {r["method"] for r in result["rows"]} == set(quality.METHODS)
  assert len(result["oneshot"][0]["batch"]) == len(result["oneshot"][0]["paths"]) >= 12
  saved = json.load(open(tmp_path / "study" / quality.RESULT_FILE))
  assert saved["summary"]["pcnas"]["regret"] == result["summary"]["pcnas"]["regret"]
  trained = list(train.calls)
  again = quality.run_study(config, table, str(tmp_path / "study"), add, progress=False)
  assert train.calls == trained  # nothing trained twice
  assert again["rows"] == result["rows"]


def test_candidates_to_train_skips_known_and_infeasible_and_caps_a_seeded_sample():
  nan = float("nan")
  candidates = {"paths": [[1, 1, 2, 0, 1, 1, 1, 1], [1, 1, 2, 1, 0, 1, 1, 1], [2, 2, 2, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1], [2, 1, 0, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]],
                "potentials": [0.5, 0.4, nan, 0.3, 0.2, 0.1]}
  known = lambda path: list(path) == [2, 1, 0, 1, 1, 1, 1, 1]
  everything = quality.candidates_to_train(candidates, known, 0, seed=0)
  # The first two are one network (the Identity moved within its stage); the third has no potential
  # (infeasible); the table holds the fifth.
  assert sorted(map(quality.canonical, everything)) == sorted(
      {quality.canonical(p) for p in ([1, 1, 2, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1])})
  assert len(everything) == 3
  capped = quality.candidates_to_train(candidates, known, 2, seed=0)
  assert len(capped) == 2 and all(p in everything for p in capped)
  assert capped == quality.candidates_to_train(candidates, known, 2, seed=0)  # seeded
  draws = {tuple(map(tuple, quality.candidates_to_train(candidates, known, 1, seed=s))) for s in range(20)}
  assert len(draws) == 3  # every one of them can be drawn
