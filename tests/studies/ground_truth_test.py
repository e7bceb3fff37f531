"""Tests of the ground-truth tables: the resumable build, refusals, on-demand additions, statistics."""

import dataclasses
import json

import numpy as np
import pytest

from pcnas_tf.studies import ground_truth
from pcnas_tf.studies import ground_truth_build
from pcnas_tf.space import nasbench_macro

CONFIG = ground_truth_build.BuildConfig(networks=6, second_seed_every=3)


class FakeTrain:
  """Accuracy from the path's digits (a known ranking), a seed-dependent wobble; counts calls."""

  def __init__(self, fail_after=None):
    self.calls, self.fail_after = [], fail_after

  def __call__(self, config, key, seed):
    if self.fail_after is not None and len(self.calls) >= self.fail_after:
      raise KeyboardInterrupt("simulated interruption")
    self.calls.append((key, seed))
    accuracy = 0.5 + sum(map(int, key)) / 40 + 0.001 * seed
    return {"test_top1": accuracy, "validation_top1": accuracy - 0.01, "wall_s": 1.0,
            "flops": 1000 + sum(map(int, key)), "params": 10}


def test_draw_counts_each_network_once_and_is_seeded():
  space = CONFIG.space
  drawn = ground_truth_build.draw_networks(space, 50, seed=3)
  assert len(set(drawn)) == 50 and all(nasbench_macro.canonical_key(k) == k for k in drawn)
  assert drawn == ground_truth_build.draw_networks(space, 50, seed=3) != ground_truth_build.draw_networks(space, 50, 4)


def test_build_plans_paired_networks_first_and_saves_each_training(tmp_path):
  path = str(tmp_path / "gt.json")
  train = FakeTrain()
  state = ground_truth_build.build(path, CONFIG, train, progress=False)
  assert len(state["networks"]) == 6 and len(train.calls) == 8  # two networks with a second seed
  assert [seed for _, seed in train.calls[:4]] == [0, 1, 0, 1]
  truth = ground_truth.load(path)
  key = train.calls[0][0]
  entry = truth.entry(tuple(int(c) for c in key))
  assert entry.seeds == pytest.approx((100 * (0.5 + sum(map(int, key)) / 40),
                                       100 * (0.501 + sum(map(int, key)) / 40)))
  assert entry.flops == 1000 + sum(map(int, key))


def test_interrupted_build_resumes_without_retraining(tmp_path):
  path = str(tmp_path / "gt.json")
  with pytest.raises(KeyboardInterrupt):
    ground_truth_build.build(path, CONFIG, FakeTrain(fail_after=3), progress=False)
  assert len(ground_truth_build.pending(json.loads(open(path).read()))) == 5
  resumed = FakeTrain()
  ground_truth_build.build(path, CONFIG, resumed, progress=False)
  assert len(resumed.calls) == 5
  again = FakeTrain()
  ground_truth_build.build(path, CONFIG, again, progress=False)
  assert again.calls == []


def test_shards_split_the_plan_and_merge_their_saves(tmp_path):
  path = str(tmp_path / "gt.json")
  first, second = FakeTrain(), FakeTrain()

  def train_second_inside_first(config, key, seed):  # the other shard saves while this one trains
    if not second.calls:
      ground_truth_build.build(path, CONFIG, second, progress=False, shard=1, shards=2)
    return first(config, key, seed)

  ground_truth_build.build(path, CONFIG, train_second_inside_first, progress=False, shard=0, shards=2)
  order = [tuple(item) for item in json.loads(open(path).read())["order"]]
  assert first.calls == order[0::2] and second.calls == order[1::2]
  assert ground_truth_build.pending(json.loads(open(path).read())) == []  # neither overwrote the other
  with pytest.raises(ground_truth.GroundTruthError, match="Shard 2 of 2"):
    ground_truth_build.build(path, CONFIG, FakeTrain(), progress=False, shard=2, shards=2)


def test_a_table_of_another_schedule_is_refused_by_name(tmp_path):
  path = str(tmp_path / "gt.json")
  ground_truth_build.build(path, CONFIG, FakeTrain(), progress=False, limit=1)
  other = dataclasses.replace(CONFIG, schedule=dataclasses.replace(CONFIG.schedule, steps_per_epoch=7))
  with pytest.raises(ground_truth.GroundTruthError, match="schedule.steps_per_epoch"):
    ground_truth_build.build(path, other, FakeTrain(), progress=False)
  wider = dataclasses.replace(CONFIG, width=0.5)
  with pytest.raises(ground_truth.GroundTruthError, match="width"):
    ground_truth_build.build(path, wider, FakeTrain(), progress=False)


def test_on_demand_addition_is_idempotent_and_canonical(tmp_path):
  path = str(tmp_path / "gt.json")
  ground_truth_build.build(path, CONFIG, FakeTrain(), progress=False)
  train = FakeTrain()
  # 10201000 and 10210000 are one network (the Identity moves within the second stage's tail).
  ground_truth_build.add_networks(path, CONFIG, ["10201000", "10210000"], train, progress=False)
  ground_truth_build.add_networks(path, CONFIG, ["10210000"], train, progress=False)
  assert train.calls == [("10210000", 0)]
  truth = ground_truth.load(path)
  assert truth.entry((1, 0, 2, 0, 1, 0, 0, 0)) is truth.entry((1, 0, 2, 1, 0, 0, 0, 0)) is not None


def test_corrupt_and_foreign_files_are_user_errors(tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(ground_truth.GroundTruthError, match="corrupt"):
    ground_truth.load(str(bad))
  bad.write_text('{"format": "other"}')
  with pytest.raises(ground_truth.GroundTruthError, match="is not a"):
    ground_truth.load(str(bad))


def test_noise_ceiling_on_constructed_seeds():
  space = CONFIG.space
  def truth(pairs):
    entries = {(i, 0, 0, 0, 0, 0, 0, 0): ground_truth.Entry(float(np.mean(p)), tuple(p), 1, 1)
               for i, p in enumerate(pairs)}
    return ground_truth.GroundTruth("constructed", space, entries)
  agree = truth([(1, 1.1), (2, 2.1), (3, 3.1)])
  assert ground_truth.noise_ceiling(agree, fraction=1.0)["kendall"] == pytest.approx(1.0)
  # One swapped pair of three: tau = (2 - 1) / 3.
  swapped = truth([(1, 2), (2, 1), (3, 3)])
  assert ground_truth.noise_ceiling(swapped, fraction=1.0)["kendall"] == pytest.approx(1 / 3)
  assert np.isnan(ground_truth.noise_ceiling(truth([(1, 1)]))["kendall"])


@pytest.mark.skipif(not nasbench_macro.DEFAULT_PATH.exists(), reason="NAS-Bench-Macro is not here")
def test_nasbench_macro_through_the_same_interface():
  truth = ground_truth.from_nasbench_macro()
  assert len(truth.entries) == 3969
  best = max(truth.entries, key=lambda p: truth.entries[p].accuracy)
  assert "".join(map(str, best)) == "22212220"
  assert truth.entry((2, 2, 2, 1, 2, 2, 2, 0)).accuracy == pytest.approx(93.13, abs=0.01)
  assert ground_truth.noise_ceiling(truth)["kendall"] == pytest.approx(0.88, abs=0.03)


def test_on_demand_addition_to_an_unfinished_table_trains_only_what_was_added(tmp_path):
  path = str(tmp_path / "gt.json")
  ground_truth_build.build(path, CONFIG, FakeTrain(), progress=False, limit=1)
  train = FakeTrain()
  ground_truth_build.add_networks(path, CONFIG, ["22222222"], train, progress=False)
  assert train.calls == [("22222222", 0)]
  assert len(ground_truth_build.pending(json.loads(open(path).read()))) == 7  # the plan waits


def test_config_of_a_table_adds_to_it_without_a_mismatch(tmp_path):
  path = str(tmp_path / "gt.json")
  ground_truth_build.build(path, CONFIG, FakeTrain(), progress=False, limit=2)
  config = ground_truth_build.config_of(json.loads(open(path).read()))
  assert config.schedule == CONFIG.schedule and config.width == CONFIG.width
  train = FakeTrain()
  ground_truth_build.add_networks(path, config, ["11111111"], train, progress=False)
  assert train.calls == [("11111111", 0)]
  assert ground_truth.load(path).steps == CONFIG.schedule.epochs * CONFIG.schedule.steps_per_epoch


def test_agreement_of_two_tables_over_the_networks_both_hold():
  space = CONFIG.space
  make = lambda values: ground_truth.GroundTruth("t", space, {
      key: ground_truth.Entry(v, (v,), 1, 1) for key, v in values.items()})
  keys = [tuple(int(c) for c in key) for key in ground_truth_build.draw_networks(space, 6, seed=0)]
  a = make({k: float(i) for i, k in enumerate(keys)})
  reverse = make({k: float(-i) for i, k in enumerate(keys[1:], start=1)})  # keys[0] only in a
  found = ground_truth.agreement(a, reverse)
  assert found["networks"] == 5 and found["kendall"] == pytest.approx(-1)
  one_swap = make({k: float({4: 5, 5: 4}.get(i, i)) for i, k in enumerate(keys)})
  assert ground_truth.agreement(a, one_swap)["kendall"] == pytest.approx((14 - 1) / 15)
  assert ground_truth.agreement(a, make({keys[0]: 1.0}))["networks"] == 1


def test_networks_added_on_demand_are_not_of_the_draw(tmp_path):
  path = str(tmp_path / "gt.json")
  ground_truth_build.build(path, CONFIG, FakeTrain(), progress=False)
  ground_truth_build.add_networks(path, CONFIG, ["22222222"], FakeTrain(), progress=False)
  truth = ground_truth.load(path)
  assert len(truth.paths()) == 7 and len(truth.paths(drawn_only=True)) == 6
  assert not truth.entry((2,) * 8).drawn
