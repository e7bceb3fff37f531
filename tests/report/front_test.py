"""Tests of the accuracy-cost front (pure functions, no picture)."""

import math

import numpy as np

from pcnas_tf.report import front


def _dominated(points, i):
  cost, accuracy = points[i]
  return any(c <= cost and a >= accuracy and (c < cost or a > accuracy) for c, a in points)


def test_the_front_is_every_point_no_other_beats_cheapest_first():
  points = [(3.0, 0.9), (1.0, 0.5), (2.0, 0.7), (2.5, 0.6), (1.5, 0.5), (4.0, 0.9)]
  assert front.non_dominated(points) == [1, 2, 0]


def test_random_fronts_match_the_definition():
  rng = np.random.default_rng(0)
  for _ in range(20):
    points = [tuple(p) for p in rng.integers(0, 6, size=(12, 2)).astype(float)]
    found = front.non_dominated(points)
    undominated = {i for i in range(len(points)) if not _dominated(points, i)}
    assert {points[i] for i in found} == {points[i] for i in undominated}
    assert len({points[i] for i in found}) == len(found)  # of equal points only one is kept
    assert [points[i][0] for i in found] == sorted(points[i][0] for i in found)


def test_points_with_nan_are_left_out():
  assert front.non_dominated([(math.nan, 0.9), (1.0, math.nan), (2.0, 0.5)]) == [2]
  assert front.non_dominated([]) == []
