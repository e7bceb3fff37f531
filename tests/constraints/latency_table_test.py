"""Tests of building, resuming, calibrating, caching and loading latency tables (with a fake timer)."""

import dataclasses
import json

import numpy as np
import pytest

from pcnas_tf import errors
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.constraints import backends
from pcnas_tf.constraints import timing
from pcnas_tf.constraints import constraint
from pcnas_tf.constraints import latency_probes
from pcnas_tf.constraints import latency_table as table_lib

SPACE = space_lib.SearchSpace(
    name="tiny", stem_channels=8, stem_stride=1, first_op=None,
    layers=(space_lib.LayerSpec(8, 1, ("Identity", "MBConv_3_3")),
            space_lib.LayerSpec(16, 2, ("Identity", "MBConv_3_3", "MBConv_6_5"))),
    head_channels=16, activation="relu")
CONFIG = backends.BackendConfig("tflite", runs=3)
SHAPE = dict(batch=2, resolution=8, calibration_archs=5)
OVERHEAD_MS = 0.5


class FakeBackend(backends.Backend):
  """Latency = parameters / 1000 + a per-call overhead: additive, so the truth is known exactly.

  A real whole network pays the overhead once, while the summed per-op table pays it per tiny model.
  """

  def __init__(self, fail_after=None):
    super().__init__(CONFIG)
    self.calls, self.fail_after = 0, fail_after

  def device(self):
    return "fake device"

  def measure(self, model, input_shape):
    if self.fail_after is not None and self.calls >= self.fail_after:
      raise KeyboardInterrupt("simulated interruption")
    self.calls += 1
    latency = model.count_params() / 1000 + OVERHEAD_MS
    return timing.Timing(latency, latency * 1.1, 0.1, 3)

  def prepare_reference(self, model, input_shape):
    return model.count_params() / 1000 + OVERHEAD_MS

  def measure_group(self, jobs, reference):
    """Like the real one: ratio to the reference, whose own minimum here is 20% off (placement)."""
    timings = [self.measure(model, shape) for model, shape in jobs]
    return [timing.Timing(t.min_ms, t.median_ms, t.spread_ms, t.runs, t.min_ms / reference,
                            reference * 1.2) for t in timings]


def _build(path, backend=None, **overrides):
  return table_lib.build_table(SPACE, CONFIG, output=str(path), backend=backend or FakeBackend(),
                               progress=False, **{**SHAPE, **overrides})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  path = tmp_path_factory.mktemp("table") / "tiny.json"
  return path, _build(path)


def test_table_has_metadata_and_both_tables(built):
  path, table = built
  data = json.loads(path.read_text())
  assert data["complete"] and data["metadata"]["batch"] == 2
  assert data["metadata"]["space_fingerprint"] == SPACE.fingerprint()
  assert table.measured_ops_ms[0][0] == 0.0  # a shape-keeping Identity is free and not timed
  assert len(table.ops_ms) == 2 and len(table.ops_ms[1]) == 3


def test_calibration_removes_the_per_model_overhead(built):
  _, table = built
  arch = ("MBConv_3_3", "MBConv_6_5")
  backend = FakeBackend()
  from pcnas_tf.nn import model as model_lib  # pylint: disable=g-import-not-at-top
  truth = backend.measure(model_lib.build_model(arch, SPACE, (8, 8, 3), 10), (2, 8, 8, 3)).min_ms
  raw_error = abs(constraint.predict(arch, table, calibrated=False) - truth)
  assert raw_error == pytest.approx(3 * OVERHEAD_MS, abs=1e-6)  # stem, head and two ops vs one call
  assert abs(constraint.predict(arch, table) - truth) < 0.1 * raw_error


def test_entries_are_ratios_in_the_unit_of_the_networks_own_minimum(built):
  path, table = built
  data = json.loads(path.read_text())
  assert table.reference_arch == "11" and data["format"] == table_lib.FORMAT
  # The unit comes from the networks' own minimum, not from the reference's (20% off in the fake).
  arch = data["measurements"][f"arch/{data['calibration_archs'][0]}"]
  assert table.reference_ms == pytest.approx(arch["min_ms"] / arch["ratio"])
  assert table.reference_ms == pytest.approx(arch["reference_ms"] / 1.2)
  stem = data["measurements"]["stem"]
  assert table.measured_base_ms > stem["ratio"] * table.reference_ms > 0  # stem + head


def test_calibration_networks_are_the_fitted_networks_as_measured_and_as_predicted(built):
  path, table = built
  rows = table_lib.calibration_networks(table, SPACE)
  assert [row["arch"] for row in rows] == json.loads(path.read_text())["calibration_archs"]
  from pcnas_tf.nn import model as model_lib  # pylint: disable=g-import-not-at-top
  for row in rows:
    arch = SPACE.parse_arch(row["arch"])
    network = model_lib.build_model(arch, SPACE, (8, 8, 3), 10)
    assert row["measured_ms"] == pytest.approx(network.count_params() / 1000 + OVERHEAD_MS)
    assert row["predicted_ms"] == pytest.approx(constraint.predict(arch, table))


def test_interrupted_build_resumes_without_remeasuring(tmp_path, built, monkeypatch):
  _, reference = built
  yardstick = len(reference.yardstick["archs"])
  monkeypatch.setattr(table_lib, "GROUP", 2 + yardstick)  # one file write per two models
  path = tmp_path / "tiny.json"
  with pytest.raises(KeyboardInterrupt):
    _build(path, FakeBackend(fail_after=2 * (2 + yardstick)))
  assert len(json.loads(path.read_text())["measurements"]) == 4
  with pytest.raises(table_lib.TableError, match="unfinished"):
    table_lib.load_table(str(path))
  resumed = FakeBackend()
  table = _build(path, resumed)
  remaining = len(json.loads(path.read_text())["measurements"]) - 4
  assert resumed.calls == remaining + -(-remaining // 2) * yardstick  # each group times the yardstick
  assert np.allclose(sum(table.ops_ms, ()), sum(reference.ops_ms, ()), atol=1e-9)


class DriftingReferenceBackend(FakeBackend):
  """The reference runs at another speed in every group, as on a shared VM: all ratios move with it."""

  def __init__(self, speeds):
    super().__init__()
    self.speeds, self.groups = speeds, 0

  def measure_group(self, jobs, reference):
    speed = self.speeds[self.groups % len(self.speeds)]
    self.groups += 1
    return [dataclasses.replace(t, ratio=t.ratio / speed) for t in super().measure_group(jobs, reference)]


def test_yardstick_cancels_a_reference_that_drifts_between_groups(tmp_path, built, monkeypatch):
  _, steady = built
  monkeypatch.setattr(table_lib, "GROUP", 2 + len(steady.yardstick["archs"]))  # several groups
  drifting = _build(tmp_path / "drift.json", DriftingReferenceBackend((1.0, 1.3, 0.8, 1.1)))
  # The yardstick cancels the drift exactly in exact arithmetic, so the two builds' calibration inputs
  # differ by float rounding only: the fit must choose the same model (calibration.TIE), and at a
  # fixed model the costs are a smooth function of its inputs, equal to far below a timing's noise.
  assert (drifting.calibration["model"], drifting.calibration["ridge_lambda"]) == (
      steady.calibration["model"], steady.calibration["ridge_lambda"])
  np.testing.assert_allclose(sum(drifting.ops_ms, ()), sum(steady.ops_ms, ()), rtol=1e-9, atol=1e-12)
  raw = json.loads((tmp_path / "drift.json").read_text())["measurements"]
  assert len({round(raw[k]["ratio"] / m["ratio"], 6)  # the stored (raw) ratios did drift
              for k, m in json.loads(built[0].read_text())["measurements"].items()}) > 1


def test_loading_a_table_for_another_batch_names_the_field(built):
  path, table = built
  expected = {**table.metadata, "batch": 16}
  with pytest.raises(table_lib.TableError, match="batch is 2, expected 16"):
    table_lib.load_table(str(path), expected)


def test_resuming_into_a_file_of_another_space_is_refused(built):
  path, _ = built
  with pytest.raises(table_lib.TableError, match="space_fingerprint"):
    table_lib.build_table(space_lib.macro_space(0.125), CONFIG, output=str(path),
                          backend=FakeBackend(), progress=False, **SHAPE)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format": "other"}'])
def test_corrupt_files_are_user_errors(tmp_path, content):
  path = tmp_path / "bad.json"
  path.write_text(content)
  with pytest.raises(table_lib.TableError, match="corrupt"):
    table_lib.load_table(str(path))


def test_a_table_of_the_old_format_is_refused_by_name(tmp_path, built):
  path, _ = built
  data = json.loads(path.read_text())
  old = tmp_path / "old.json"
  old.write_text(json.dumps({**data, "format": "pcnas_tf.latency_table/1"}))
  with pytest.raises(table_lib.TableError, match="older format 'pcnas_tf.latency_table/1'"):
    table_lib.load_table(str(old))


def test_cache_reuses_a_matching_table(tmp_path):
  first = FakeBackend()
  table_lib.get_or_build_table(str(tmp_path), SPACE, CONFIG, progress=False, timer=first, **SHAPE)
  again = FakeBackend()
  table_lib.get_or_build_table(str(tmp_path), SPACE, CONFIG, progress=False, timer=again, **SHAPE)
  assert first.calls > 0 and again.calls == 0
  other = FakeBackend()
  table_lib.get_or_build_table(str(tmp_path), SPACE, CONFIG, progress=False, timer=other,
                               **{**SHAPE, "batch": 1})
  assert other.calls == first.calls and len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.parametrize("cache", [True, False])
def test_an_unwritable_table_directory_is_refused_before_the_first_timing(tmp_path, cache):
  (tmp_path / "file").write_text("")  # a file where the directory would be: as /proc/x, even for root
  timer = FakeBackend()
  flag = "--latency_cache_dir" if cache else "--output"
  words = f"atency table directory .*(is a file, not a|exists and is not a) directory; choose another {flag}"
  with pytest.raises(errors.UserError, match=words):
    if cache:
      table_lib.get_or_build_table(str(tmp_path / "file" / "cache"), SPACE, CONFIG, progress=False,
                                   timer=timer, **SHAPE)
    else:
      _build(tmp_path / "file" / "t.json", backend=timer)
  assert timer.calls == 0


def test_batch_below_one_is_a_user_error(tmp_path):
  with pytest.raises(errors.UserError, match="Batch size 0 must be >= 1"):
    _build(tmp_path / "t.json", batch=0)


def test_unknown_backend_is_a_user_error(tmp_path):
  with pytest.raises(errors.UserError, match="Unknown latency backend 'tpu'; allowed: tflite, tf"):
    table_lib.get_or_build_table(str(tmp_path), SPACE, "tpu", batch=1, resolution=8)


def test_random_archs_are_distinct_and_exclude_given_ones():
  first = latency_probes.random_archs(SPACE, 3, seed=0)
  rest = latency_probes.random_archs(SPACE, 10, seed=1, exclude=first)
  assert len(set(first + rest)) == SPACE.size() and len(rest) == SPACE.size() - 3


def test_each_session_in_its_own_unit_reads_the_same_latencies():
  # Two sessions time the same networks against reference interpreters 10% apart in speed: the ratios
  # differ, the latencies (ratio x that session's unit) do not. Unpaired timings carry no unit.
  latencies = [0.4, 0.9, 1.3]
  sessions = [[{"min_ms": ms, "ratio": ms / reference_ms} for ms in latencies] + [{"min_ms": 5.0}]
              for reference_ms in (0.42, 0.462)]
  units = [table_lib.unit_ms(session) for session in sessions]
  assert units[1] == pytest.approx(1.1 * units[0])
  for session, unit in zip(sessions, units):
    assert [m["ratio"] * unit for m in session[:-1]] == pytest.approx(latencies)
  assert np.isnan(table_lib.unit_ms([{"min_ms": 1.0}]))
