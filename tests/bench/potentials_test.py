"""Tests of the potentials benchmark's ideal speedup on constructed intervals with known answers."""

import pytest

from bench import potentials
from pcnas_tf.space import cost as cost_lib
from pcnas_tf.space import search_space as space_lib

SPACE = space_lib.macro_space(0.25)
SHAPE = (16, 16, 3)


def _flops(path):
  layers = cost_lib.layer_costs(SPACE, SHAPE)
  return sum(layers[index][choice].flops for index, choice in enumerate(path))


def test_one_path_drawn_n_times_on_one_batch_ideally_costs_one_forward_pass():
  path = (1, 2, 0, 1, 2, 1, 0, 2)
  assert potentials.ideal_speedup(SPACE, SHAPE, 10, {path[:1]: [path] * 6}, 1) == pytest.approx(6)
  # On two batches (completions alternate) the path is computed once per batch.
  assert potentials.ideal_speedup(SPACE, SHAPE, 10, {path[:1]: [path] * 6}, 2) == pytest.approx(3)


def test_two_paths_that_differ_in_the_last_layer_share_everything_before_it():
  first, second = (1, 2, 1, 1, 2, 1, 1, 1), (1, 2, 1, 1, 2, 1, 1, 2)
  stem = cost_lib.stem_cost(SPACE, SHAPE).flops
  head = cost_lib.head_cost(SPACE, SHAPE, 10).flops
  last = cost_lib.layer_costs(SPACE, SHAPE)[-1]
  naive = 2 * (stem + head) + _flops(first) + _flops(second)
  shared = stem + 2 * head + _flops(first) + last[2].flops
  ideal = potentials.ideal_speedup(SPACE, SHAPE, 10, {(1,): [first, second]}, 1)
  assert ideal == pytest.approx(naive / shared)
  assert cost_lib.fixed_cost(SPACE, SHAPE, 10) == cost_lib.stem_cost(SPACE, SHAPE) + cost_lib.head_cost(SPACE, SHAPE, 10)
