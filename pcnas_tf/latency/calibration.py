"""Fitting the lookup table to end-to-end latencies: TuNAS' linear cost model.

A whole network's latency is modelled as `base + sum_l cost[l][choice_l]`: one-hot (layer, op) features
plus a constant. Summing separately timed operators misses what only the whole network shows: the
interpreter's per-call overhead is paid once instead of once per tiny model, and caches and fusion change
per-op costs. Least squares over measured whole architectures corrects that.

Identifiability. With one-hot features per layer, adding c to every op of a layer and subtracting c from
the constant leaves every prediction unchanged, so plain least squares has no unique answer; and with K
calibration networks and F = sum of choices features it needs K > F (210 features in the small space).
Instead the fit is a ridge regression *toward the measured table*: it minimises
  |y - X w - b|^2 + lambda |w - w_measured|^2,
with the constant b and one global scale of the measured op costs left unpenalised. The penalty picks
the unique solution closest to the per-op measurements, so any K works; the scale and the constant
capture the systematic effects (overhead, a uniform speed-up) with two numbers, and the per-op
corrections only move where the data asks for it. Lambda is chosen by exact leave-one-out error, and
the fit competes, on that same leave-one-out error, with two simpler models: the measured table as it
is, and the measured table plus one constant. On a noisy machine with sub-millisecond networks the
simpler models often predict held-out networks better, and then they are kept.
"""

import dataclasses
from typing import Sequence

import numpy as np

LAMBDAS = tuple(float(x) for x in np.logspace(-2, 3, 11))
# Below this many networks the unpenalised scale and constant cannot be checked out of sample.
MIN_NETWORKS = 4


@dataclasses.dataclass(frozen=True)
class Fit:
  """Calibrated costs and how they were found.

  Attributes:
    ops_ms: per layer, the calibrated cost of each choice.
    base_ms: the calibrated fixed cost (stem, head, per-call overhead).
    scale: the factor applied to every measured op cost before per-op corrections.
    ridge_lambda: the penalty chosen by leave-one-out error.
    loo_rmse_ms: that leave-one-out root-mean-square error.
  """
  ops_ms: tuple[tuple[float, ...], ...]
  base_ms: float
  scale: float
  ridge_lambda: float
  loo_rmse_ms: float


def one_hot(paths: Sequence[Sequence[int]], num_choices: Sequence[int]) -> np.ndarray:
  """The (networks x sum(num_choices)) indicator matrix of each path's choices."""
  offsets = np.concatenate([[0], np.cumsum(num_choices)[:-1]])
  features = np.zeros((len(paths), int(np.sum(num_choices))))
  for row, path in enumerate(paths):
    features[row, offsets + np.asarray(path)] = 1.0
  return features


def _ridge(design, target, penalty, ridge_lambda):
  """Ridge solution and leave-one-out residuals (closed form through the hat matrix)."""
  gram = design.T @ design + ridge_lambda * np.diag(penalty)
  inverse = np.linalg.pinv(gram)
  coefficients = inverse @ design.T @ target
  leverage = np.einsum("ij,jk,ik->i", design, inverse, design)
  residuals = (target - design @ coefficients) / np.clip(1.0 - leverage, 1e-9, None)
  return coefficients, residuals


def fit(paths: Sequence[Sequence[int]], latencies_ms: Sequence[float],
        measured_ops_ms: Sequence[Sequence[float]], measured_base_ms: float) -> Fit:
  """Fits calibrated costs to whole-network latencies, shrinking toward the measured table."""
  num_choices = [len(layer) for layer in measured_ops_ms]
  prior = np.concatenate([np.asarray(layer, float) for layer in measured_ops_ms])
  features = one_hot(paths, num_choices)
  ops_sum = features @ prior
  target = np.asarray(latencies_ms, float) - measured_base_ms - ops_sum
  if len(paths) < MIN_NETWORKS:
    return Fit(_split(prior, num_choices), float(measured_base_ms), 1.0, float("inf"), float("nan"))
  design = np.column_stack([np.ones(len(paths)), ops_sum, features])
  penalty = np.concatenate([[0.0, 0.0], np.ones(features.shape[1])])
  # Simpler models first, so that ties keep them: the measured table (no coefficient), then a constant.
  none = np.zeros(design.shape[1])
  constant = none.copy()
  constant[0] = np.mean(target)
  n = len(paths)
  best = min([(_rms(target), float("inf"), none),
              (_rms((target - constant[0]) * n / (n - 1)), float("inf"), constant)],
             key=lambda candidate: candidate[0])
  for ridge_lambda in LAMBDAS:
    coefficients, residuals = _ridge(design, target, penalty, ridge_lambda)
    if _rms(residuals) < best[0]:
      best = (_rms(residuals), ridge_lambda, coefficients)
  rmse, ridge_lambda, coefficients = best
  scale = 1.0 + coefficients[1]
  # Few networks for many features can push a rarely seen op below zero; no operator takes negative time.
  ops = np.maximum(prior * scale + coefficients[2:], 0.0)
  return Fit(_split(ops, num_choices), float(measured_base_ms + coefficients[0]), float(scale),
             ridge_lambda, rmse)


def _rms(values) -> float:
  return float(np.sqrt(np.mean(np.square(values))))


def _split(flat, num_choices):
  bounds = np.cumsum([0] + list(num_choices))
  return tuple(tuple(float(v) for v in flat[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
