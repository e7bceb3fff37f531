"""The rank check and the ablation grid read stand-alone accuracies from a ground-truth table: the
table's figures when it holds the network, a training with its schedule (added to it) when it does not."""

import dataclasses

import pytest

from pcnas_tf import errors
from pcnas_tf.studies import ablation as ablation_lib
from pcnas_tf.studies import ground_truth
from pcnas_tf.studies import ground_truth_build
from pcnas_tf.studies import rank_check as rank_lib
from tests import helpers


@pytest.fixture(name="study")
def fixture_study(tmp_path, monkeypatch):
  table, _, search = helpers.tiny_macro_study(tmp_path, networks=6)
  train = helpers.FakeStandalone()
  monkeypatch.setattr(ground_truth_build, "train_alone", lambda work_root: train)
  return table, search, train


def test_a_table_of_other_data_is_refused_naming_the_field(study):
  table, search, _ = study
  other = dataclasses.replace(search, data=dataclasses.replace(search.data, validation=64))
  with pytest.raises(errors.UserError, match=r"validation 64 \(table: 96\)"):
    rank_lib.RankConfig(other, num_archs=2, ground_truth=table).validate()
  with pytest.raises(errors.UserError, match=r"width 0.25 \(table: macro width 0.1\)"):
    ablation_lib.AblationConfig(dataclasses.replace(search, width=0.25), ground_truth=table).validate()


def _expected(table, paths):
  truth = ground_truth.load(table)
  return [truth.entry(p).accuracy / 100 for p in paths]


@pytest.mark.slow
def test_rank_check_takes_its_stand_alone_accuracies_from_the_table(study, tmp_path):
  table, search, train = study
  before = set(ground_truth.load(table).entries)
  config = rank_lib.RankConfig(search, num_archs=3, archs="random", ground_truth=table)
  result = rank_lib.run_rank_check(config, str(tmp_path / "rank"), progress=False)
  paths = [a["path"] for a in result["archs"]]
  assert [a["standalone_top1"] for a in result["archs"]] == pytest.approx(_expected(table, paths))
  assert all(a["standalone_source"] == table for a in result["archs"])
  truth = ground_truth.load(table)
  trained = {truth.canonical(p) for p in paths} - before  # only the networks the table lacked
  assert sorted(train.calls) == sorted("".join(map(str, p)) for p in trained)


@pytest.mark.slow
def test_ablation_rows_take_their_top1_from_the_table(study, tmp_path):
  table, search, _ = study
  result = ablation_lib.run_ablation(ablation_lib.AblationConfig(search, ground_truth=table),
                                     str(tmp_path / "ablation"), progress=False)
  space = ground_truth.load(table).space
  paths = [space.indices(row["arch"]) for row in result["rows"]]
  assert [row["top1"] for row in result["rows"]] == pytest.approx(_expected(table, paths))
  assert result["standalone_source"] == table and "table" in ablation_lib.format_table(result)
