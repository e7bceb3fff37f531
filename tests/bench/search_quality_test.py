"""Tests of the search-quality benchmark's proxies on constructed inputs with known answers (its statistics:
tests/studies/search_comparison_test.py)."""

import numpy as np
import pytest

from bench import search_quality
from pcnas_tf.data import data_config
from pcnas_tf.nn import model as model_lib
from pcnas_tf.space import search_space as space_lib


def test_depth_counts_non_identity_layers():
  assert search_quality.depth((0, 1, 2, 0, 0, 1, 0, 0)) == 3


def test_zero_cost_proxies_are_finite_and_prefer_the_deeper_network():
  space = space_lib.macro_space(0.25)
  shape = (16, 16, 3)
  images = np.random.default_rng(0).uniform(-1, 1, (8, *shape)).astype(np.float32)
  scores = []
  for path in ((0,) * 8, (2,) * 8):
    model = model_lib.build_model(space.arch_from_indices(path), space, shape, 10)
    before = [w.numpy().copy() for w in model.weights]
    scores.append((search_quality.synflow(model, shape), search_quality.naswot(model, images)))
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, model.weights))  # restored
  assert all(np.isfinite(s) for pair in scores for s in pair)
  assert scores[1][0] > scores[0][0]  # more weights on every path: a larger synflow


def test_run_seeds_picks_a_share_of_the_seeds_and_refuses_others():
  data = data_config.DataConfig(resolution=14, validation=5000)
  args = search_quality.parse_args(["--seeds=3", "--run_seeds=2,0"])
  args.width = 0.25
  assert search_quality.study_config(args, data).seeds == (2, 0)
  args = search_quality.parse_args(["--seeds=2", "--run_seeds=1,2"])
  args.width = 0.25
  with pytest.raises(SystemExit, match=r"--run_seeds=1,2 names seeds outside 0..1"):
    search_quality.study_config(args, data)
