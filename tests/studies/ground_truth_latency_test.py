"""Latencies of a ground-truth table's networks: measured with LiteRT and predicted by the searches'
latency table, added once, refused under other settings."""

import dataclasses
import json

import pytest

from pcnas_tf.studies import ground_truth
from pcnas_tf.studies import ground_truth_build
from tests import helpers


@pytest.mark.slow
def test_every_trained_network_gets_a_measured_and_a_predicted_latency_once(tmp_path, monkeypatch):
  table, _, _ = helpers.tiny_macro_study(tmp_path, networks=3)
  settings = ground_truth_build.LatencySettings(batch=2, runs=3, calibration_archs=2,
                                                cache_dir=str(tmp_path / "cache"))
  state = ground_truth_build.add_latencies(table, settings, progress=False)
  trained = [n for n in state["networks"].values() if n["seeds"]]
  assert len(trained) == 3
  assert all(n["measured_latency_ms"] > 0 and n["predicted_latency_ms"] > 0 for n in trained)
  assert state["latency"]["batch"] == 2 and state["latency"]["backend"] == "tflite"
  entry = ground_truth.load(table).entry([int(c) for c in next(iter(state["networks"]))])
  assert entry.measured_latency_ms == trained[0]["measured_latency_ms"]
  before = open(table).read()
  from pcnas_tf.constraints import backends  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(backends.TFLiteBackend, "measure", lambda *a: pytest.fail("timed again"))
  ground_truth_build.add_latencies(table, settings, progress=False)  # nothing left to time
  assert json.loads(open(table).read()) == json.loads(before)
  with pytest.raises(ground_truth.GroundTruthError, match="'batch': 2"):
    ground_truth_build.add_latencies(table, dataclasses.replace(settings, batch=4), progress=False)
