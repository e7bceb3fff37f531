"""Fitting the lookup table to end-to-end latencies: TuNAS' linear cost model.

A whole network's latency is modelled as `base + sum_l cost[l][choice_l]`: one-hot (layer, op) features
plus a constant. Summing separately timed one-operator models misses what only the whole network shows:
each tiny model pays the interpreter's per-call overhead, and caches and fusion change per-op costs.
Least squares over measured whole architectures corrects that.

The fit solves, with every op cost and the constant non-negative (no operator takes negative time),
  min |W (y - b - X w)|^2 + lambda |w - (s * w_measured + t * timed)|^2
over the op costs w, the constant b, a global scale s of the measured table and a per-op offset t (the
overhead a one-operator model pays and a layer of a whole network does not; `timed` marks the ops that
were timed, i.e. all but the free shape-keeping Identity). W weights each network by 1/latency, as the
targets are relative errors. The penalty pulls the costs toward the affinely corrected measured table:
  * it makes the answer unique (one-hot features per layer are collinear with the constant);
  * with fewer networks than features (the small space has 210) it fills in what the data cannot say;
  * with many networks and a small lambda it is plain least squares on whole networks, which is what
    the macro space (24 features) gets: the measured table then only breaks ties.
Lambda is chosen by cross-validated error, and the fit competes on that same error with simpler
models: the measured table as it is; the measured table plus one constant; and the measured table
scaled per stage (a constant plus one non-negative factor per group of layers, `groups`, e.g. the
stages of a space: layers of a stage share their tensors' sizes, and a one-operator model's costs are
off from a whole network's by a factor that depends on those sizes more than on the operator). The
few-parameter models compete on CV error alone; the per-op ridge is kept only when it is clearly
better than the best of them (`_choose`). Refitted on the stored timings of seven small-space builds
(50 networks each), that rule chose the per-stage scales in all seven; the lowest CV error alone chose
the ridge once (which then missed a held-out network by 20%), and preferring the simplest model not
significantly worse chose the table plus a constant once (35%). The macro space (24 features, 60
networks) keeps the ridge fit in most builds.
Bounded least squares is scipy's `lsq_linear`.
"""

import dataclasses
from typing import Sequence

import numpy as np
from scipy import optimize

LAMBDAS = tuple(float(x) for x in np.logspace(-4, 3, 15))
# Below this many networks the unpenalised scale and constant cannot be checked out of sample.
MIN_NETWORKS = 4
FOLDS = 10
# The per-op ridge is chosen only when its CV error is lower by this many standard errors (or by half,
# see `_clearly_better`).
SIGNIFICANCE = 2.0
# CV errors closer than this, relative to the weighted latencies' RMS, are ties. Float rounding in the
# fits (about 1e-16 relative) must not pick the model: with exact timings (the tests' fakes) every
# penalty fits to round-off, and which one was lowest depended on the CPU's BLAS kernels, while the
# weakly penalised fits leave the costs' common offset to the solver's tolerance (1e-4 ms apart). Real
# timings differ in CV error by percent, far above this.
TIE = 1e-6


@dataclasses.dataclass(frozen=True)
class Fit:
  """Calibrated costs and how they were found.

  Attributes:
    ops_ms: per layer, the calibrated cost of each choice.
    base_ms: the calibrated fixed cost (stem, head, per-call overhead).
    scale: the factor applied to the measured op costs that the costs were pulled toward.
    op_offset_ms: the offset added to each timed op's measured cost in that prior.
    ridge_lambda: the penalty chosen by cross-validation (inf: a simpler model won).
    cv_rmse_ms: that cross-validated root-mean-square error (relative errors, in ms at mean latency).
    model: which model won: `table`, `constant`, `group_scale` or `ridge`.
    group_scales: the factors per group of layers, when `group_scale` won.
  """
  ops_ms: tuple[tuple[float, ...], ...]
  base_ms: float
  scale: float
  op_offset_ms: float
  ridge_lambda: float
  cv_rmse_ms: float
  model: str = "table"
  group_scales: tuple[float, ...] | None = None


def one_hot(paths: Sequence[Sequence[int]], num_choices: Sequence[int]) -> np.ndarray:
  """The (networks x sum(num_choices)) indicator matrix of each path's choices."""
  offsets = np.concatenate([[0], np.cumsum(num_choices)[:-1]])
  features = np.zeros((len(paths), int(np.sum(num_choices))))
  for row, path in enumerate(paths):
    features[row, offsets + np.asarray(path)] = 1.0
  return features


def _solve(features, target, weights, prior, timed, ridge_lambda):
  """Bounded ridge: returns [b, s, t, w...] (see the module docstring)."""
  n, f = features.shape
  data = np.column_stack([np.ones(n), np.zeros((n, 2)), features]) * weights[:, None]
  root = np.sqrt(ridge_lambda)
  penalty = np.column_stack([np.zeros(f), -prior, -timed, np.eye(f)]) * root
  lower = np.concatenate([[0.0, 0.0, -np.inf], np.zeros(f)])
  upper = np.full(f + 3, np.inf)
  result = optimize.lsq_linear(np.vstack([data, penalty]),
                               np.concatenate([target * weights, np.zeros(f)]), bounds=(lower, upper))
  return result.x


def _cv_residuals(features, target, weights, prior, timed, ridge_lambda, folds):
  residuals = np.zeros(len(target))
  for fold in range(folds):
    test = np.arange(len(target)) % folds == fold
    x = _solve(features[~test], target[~test], weights[~test], prior, timed, ridge_lambda)
    residuals[test] = target[test] - x[0] - features[test] @ x[3:]
  return residuals


def _group_features(features, prior, groups, num_choices):
  """Per network, the summed measured cost of its layers in each group."""
  layer_of = np.repeat(np.arange(len(num_choices)), num_choices)
  group_of = np.asarray(groups)[layer_of]
  names = sorted(set(groups))
  return np.column_stack([features[:, group_of == g] @ prior[group_of == g] for g in names]), group_of


def _solve_groups(z, target, weights):
  data = np.column_stack([np.ones(len(target)), z]) * weights[:, None]
  return optimize.lsq_linear(data, target * weights, bounds=(0.0, np.inf)).x


def fit(paths: Sequence[Sequence[int]], latencies_ms: Sequence[float],
        measured_ops_ms: Sequence[Sequence[float]], measured_base_ms: float,
        groups: Sequence[int] | None = None) -> Fit:
  """Fits calibrated costs to whole-network latencies (see the module docstring).

  `groups`: a group id per layer (e.g. its stage) for the per-group scale model; None: not tried.
  """
  num_choices = [len(layer) for layer in measured_ops_ms]
  prior = np.concatenate([np.asarray(layer, float) for layer in measured_ops_ms])
  timed = (prior > 0).astype(float)
  measured = _split(prior, num_choices), float(measured_base_ms)
  if len(paths) < MIN_NETWORKS:
    return Fit(*measured, 1.0, 0.0, float("inf"), float("nan"))
  features = one_hot(paths, num_choices)
  target = np.asarray(latencies_ms, float)
  weights = np.mean(target) / target
  folds = min(len(paths), FOLDS)
  raw = target - measured_base_ms - features @ prior
  # Each candidate with its weighted out-of-fold residuals.
  fold_of = np.arange(len(target)) % folds
  shifted = raw - np.array([np.mean(raw[fold_of != k]) for k in fold_of])
  few = [("table", float("inf"), raw * weights), ("constant", float("inf"), shifted * weights)]
  if groups is not None:
    z, group_of = _group_features(features, prior, groups, num_choices)
    residuals = np.zeros(len(target))
    for fold in range(folds):
      test = fold_of == fold
      x = _solve_groups(z[~test], target[~test], weights[~test])
      residuals[test] = target[test] - x[0] - z[test] @ x[1:]
    few.append(("group_scale", float("inf"), residuals * weights))
  per_op = [("ridge", ridge_lambda,
             weights * _cv_residuals(features, target, weights, prior, timed, ridge_lambda, folds))
            for ridge_lambda in LAMBDAS]
  kind, ridge_lambda, residuals = _choose(few, per_op, TIE * _rms(target * weights))
  rmse = _rms(residuals)
  if kind == "table":
    return Fit(*measured, 1.0, 0.0, float("inf"), rmse)
  if kind == "constant":
    base = max(0.0, measured_base_ms + float(np.mean(raw)))
    return Fit(measured[0], base, 1.0, 0.0, float("inf"), rmse, "constant")
  if kind == "group_scale":
    x = _solve_groups(z, target, weights)
    scales = x[1:][np.searchsorted(sorted(set(groups)), group_of)]
    return Fit(_split(prior * scales, num_choices), float(x[0]), 1.0, 0.0, float("inf"), rmse,
               "group_scale", tuple(float(v) for v in x[1:]))
  x = _solve(features, target, weights, prior, timed, ridge_lambda)
  return Fit(_split(x[3:], num_choices), float(x[0]), float(x[1]), float(x[2]), ridge_lambda, rmse,
             "ridge")


def _choose(few, per_op, tie: float):
  """The model to keep: the lowest CV error among the few-parameter models, unless the per-op ridge
  is clearly better than that (its lowest-error penalty; see `_clearly_better`).

  The few-parameter models are well determined by any calibration set and compete on CV error alone.
  The per-op ridge has more parameters than the small space has networks, and with 50 of them the CV
  errors are close and noisy: in stored small-space builds it won the CV in one of five, by 1.3
  standard errors, and then predicted held-out networks worse than the per-stage scales (up to 20%
  off against 7%). So it has to earn its parameters.

  Errors within `tie` of the lowest are ties, broken toward the simpler model: the first of `few`, and
  the largest penalty (the best determined costs), so that round-off never makes the choice.
  """
  best = _lowest(few, tie)
  challenger = _lowest(per_op[::-1], tie) if per_op else None
  return challenger if challenger is not None and _clearly_better(challenger[2], best[2], tie) else best


def _lowest(candidates, tie: float):
  """The first candidate whose CV error is within `tie` of the lowest."""
  lowest = min(_rms(c[2]) for c in candidates)
  return next(c for c in candidates if _rms(c[2]) <= lowest + tie)


def _clearly_better(residuals, than, tie: float = 0.0) -> bool:
  """Lower mean squared error by more than `SIGNIFICANCE` standard errors of the paired difference
  over the networks, or by more than half (a handful of exact timings is too few for a standard
  error to mean much); never by less than `tie` in RMS."""
  if _rms(than) - _rms(residuals) <= tie:
    return False
  difference = np.square(than) - np.square(residuals)
  error = np.std(difference) / np.sqrt(len(difference))
  return bool(np.mean(difference) > SIGNIFICANCE * error or
              np.mean(np.square(than)) > 2 * np.mean(np.square(residuals)))


def _rms(values) -> float:
  return float(np.sqrt(np.mean(np.square(values))))


def _split(flat, num_choices):
  bounds = np.cumsum([0] + list(num_choices))
  return tuple(tuple(float(v) for v in flat[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
