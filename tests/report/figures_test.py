"""Tests of the pictures' data and labels (what a picture shows is checked by looking at it)."""

import math

from matplotlib import image as mpimg

from pcnas_tf.report import figures


def test_quantities_read_in_their_unit():
  assert figures.quantity(1.6135, "ms") == "1.61 ms"
  assert figures.quantity(147002, "FLOPs") == "147k FLOPs"
  assert figures.quantity(2_345_678, "params") == "2.35M params"
  assert figures.quantity(12, "params") == "12 params"


def _result(intervals, final_pool=()):
  return {"space": {"layers": [{}, {}]}, "intervals": intervals, "final_pool": list(final_pool),
          "constraint": {"prediction_key": "predicted_latency_ms", "kind": "latency", "unit": "ms",
                         "budget": 2.0}}


def test_the_last_intervals_candidates_are_the_whole_networks_and_the_others_partial():
  first = {"interval": 0, "candidates": [[0], [1]], "potentials": [0.1, math.nan],
           "candidate_costs": [{"predicted_latency_ms": 1.0}, {}]}
  last = {"interval": 1, "candidates": [[0, 0], [0, 1]], "potentials": [0.3, 0.4],
          "candidate_costs": [{"predicted_latency_ms": 1.5}, {"predicted_latency_ms": 1.8}]}
  pool = [{"predicted_latency_ms": 1.8, "potential": 0.4, "arch_string": "01"}]
  points = figures.search_points(_result([first, last], pool))
  assert points["earlier"][0] == (1.0, 0.1, 1) and math.isnan(points["earlier"][1][0])
  assert points["networks"] == [(1.5, 0.3, 2), (1.8, 0.4, 2)]
  assert points["pool"] == points["chosen"] == [(1.8, 0.4, "01")]
  running = figures.search_points(_result([first]))  # before the last interval: no whole network yet
  assert running["networks"] == [] and len(running["earlier"]) == 2 and running["chosen"] == []


def test_without_intervals_the_pool_is_the_networks(tmp_path):
  pool = [{"predicted_latency_ms": 1.2, "potential": 0.5, "arch_string": "10"},
          {"predicted_latency_ms": 1.0, "potential": 0.45, "arch_string": "00"}]
  result = _result([], pool)
  assert figures.search_points(result)["networks"] == [(1.2, 0.5, None), (1.0, 0.45, None)]
  figures.plot_search_front(result, str(tmp_path / "front.png"))  # EA and random search: one panel
  height, width = mpimg.imread(str(tmp_path / "front.png")).shape[:2]
  assert width < 1.8 * height
