"""A smoke-and-sanity test of the NAS-Bench-Macro study on a few seeds."""

import json

import numpy as np
import pytest

from bench import macro_search
from pcnas_tf.space import nasbench_macro

pytestmark = pytest.mark.skipif(not nasbench_macro.DEFAULT_PATH.exists(),
                                reason="the shared NAS-Bench-Macro table is not on this machine")


def test_rank_percentile_counts_ties_half():
  accuracies = np.array([1.0, 2.0, 2.0, 3.0])
  assert macro_search.rank_percentile(accuracies, 3.0) == pytest.approx(87.5)
  assert macro_search.rank_percentile(accuracies, 2.0) == pytest.approx(50.0)


def test_noise_free_study_reports_consistent_figures(capsys):
  macro_search.main(["--seeds", "3", "--noise", "0", "--percentiles", "50", "--samples", "2"])
  lines = capsys.readouterr().out.strip().splitlines()
  result = json.loads(lines[-1])
  assert result["seeds"] == 3 and result["evaluations_per_run"] == 204
  (setting,) = result["settings"]
  low, high = setting["evaluations_range"]
  assert 0 < low <= high <= 204
  for method in macro_search.METHODS:
    # Regret is measured against the best feasible network, so it can never be negative.
    assert result[f"{method}_regret"] >= 0
    assert 0 < result[f"{method}_percentile"] <= 100
