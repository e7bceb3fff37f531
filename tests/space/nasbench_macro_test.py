"""Tests for the NAS-Bench-Macro loader: figures, exact additive FLOPs, duplicates and bad files."""

import collections
import json

import pytest

from pcnas_tf import errors
from pcnas_tf.space import nasbench_macro

pytestmark = pytest.mark.skipif(not nasbench_macro.DEFAULT_PATH.exists(),
                                reason="the shared NAS-Bench-Macro table is not on this machine")


@pytest.fixture(scope="module")
def bench():
  return nasbench_macro.load()


def test_table_figures_match_its_readme(bench):
  assert len(bench.entries) == 6561
  best = max(bench.entries, key=bench.accuracy)
  assert bench.key(best) == "22212220"
  assert bench.accuracy(best) == pytest.approx(93.13, abs=0.01)
  flops = [e.flops for e in bench.entries.values()]
  assert min(flops) == 7713280 and max(flops) == 105660928


def test_additive_flops_reproduce_every_entry_exactly(bench):
  assert all(bench.flops_costs.predict_units(p) == e.flops for p, e in bench.entries.items())
  assert bench.flops_costs.resolution == 1
  # MBConv_6_5 costs more than MBConv_3_3, which costs more than Identity, at every layer.
  assert all(layer[0] < layer[1] < layer[2] for layer in bench.flops_costs.units)


def test_identity_duplicates_share_one_entry(bench):
  groups = collections.defaultdict(set)
  for path, entry in bench.entries.items():
    groups[nasbench_macro.canonical_key(bench.key(path))].add(entry)
  assert len(groups) == 3969
  assert all(len(entries) == 1 for entries in groups.values())


def test_canonical_key_keeps_stage_first_layers():
  assert nasbench_macro.canonical_key("01201102") == "01210120"
  assert nasbench_macro.canonical_key("10010100") == "10010100"


def test_missing_file_is_a_user_error(tmp_path):
  with pytest.raises(errors.UserError, match="Cannot read"):
    nasbench_macro.load(tmp_path / "absent.json")


def test_non_additive_flops_are_refused(tmp_path):
  raw = json.loads(nasbench_macro.DEFAULT_PATH.read_text())
  raw["22212220"]["flops"] += 1
  path = tmp_path / "bad.json"
  path.write_text(json.dumps(raw))
  with pytest.raises(errors.UserError, match="not additive"):
    nasbench_macro.load(path)


def test_malformed_entry_is_a_user_error(tmp_path):
  path = tmp_path / "bad.json"
  path.write_text(json.dumps({"00000000": {"flops": 1}}))
  with pytest.raises(errors.UserError, match="malformed"):
    nasbench_macro.load(path)
