r"""How well do cheap estimates rank networks? Free and zero-cost proxies against a ground truth.

  python -m bench.search_quality                                   # the Fashion-MNIST table
  python -m bench.search_quality --table=nasbench_macro --sample=200
  python -m bench.search_quality --quick

For every network of the table (or a seeded sample of it), against its ground-truth test accuracy:
  flops, params   the network's cost (from the table);
  depth           its non-Identity layers;
  synflow         Tanaka et al. 2020 at initialisation: all weights made positive, an all-ones input,
                  the sum over weights of weight x d(sum of logits)/d(weight); inference-mode BN;
  naswot          Mellor et al. 2021 at initialisation: the log-determinant of the Hamming-similarity
                  kernel of the ReLU codes of one batch of validation images (every activation of the
                  network, recorded through `ops.activate`).
Each is reported with Kendall tau, Spearman, Kendall tau within the top 10% of the ground truth, and
the overlap of the top 10. The table's own seed-to-seed agreement (`noise_ceiling`) bounds what any
estimate can reach.

What this does not yet measure (the issue's full study): the supergraph estimates (One-Shot accuracy
over the table's networks, PC-NAS potentials) and the searches under latency budgets; their keys are
in the JSON line as null, and `not_measured` lists them.

Ends with one JSON line.
"""

import argparse
import json
import time

import numpy as np
from scipy import stats

from pcnas_tf import console

console.quiet_startup()

from pcnas_tf.data import data_config  # pylint: disable=g-import-not-at-top,g-bad-import-order
from pcnas_tf.data import sources as data_sources  # pylint: disable=g-import-not-at-top,g-bad-import-order
from pcnas_tf.data import batches as batches_lib  # pylint: disable=g-import-not-at-top,g-bad-import-order
from pcnas_tf.studies import ground_truth
from pcnas_tf.nn import model as model_lib
from pcnas_tf.nn import ops

TABLE = "benchmarks/ground_truth_fashion_mnist_900steps.json"
NOT_MEASURED = ("pcnas_kendall", "oneshot_kendall", "pcnas_regret", "oneshot_ea_regret",
                "oneshot_random_regret", "random_alone_regret", "max_flops_regret", "pcnas_regret_se")


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--table", default=TABLE, help="A ground-truth JSON file, or nasbench_macro.")
  parser.add_argument("--sample", type=int, default=0, help="Score a seeded sample of this many "
                      "networks (0: all).")
  parser.add_argument("--batch", type=int, default=64, help="Images for NASWOT's kernel.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--quick", action="store_true", help="At most 60 networks.")
  return parser.parse_args(argv)


def ranking(truth_values, estimate, fraction=0.1) -> dict:
  """Kendall, Spearman, Kendall within the ground truth's top `fraction`, top-10 overlap."""
  truth_values, estimate = np.asarray(truth_values, float), np.asarray(estimate, float)
  top = ground_truth.top_fraction(truth_values, fraction)
  k = min(10, len(truth_values))
  overlap = len(set(np.argsort(truth_values)[::-1][:k]) & set(np.argsort(estimate)[::-1][:k]))
  return {"kendall": ground_truth.kendall(truth_values, estimate),
          "spearman": float(stats.spearmanr(truth_values, estimate).statistic),
          "kendall_top": ground_truth.kendall(truth_values[top], estimate[top]) if len(top) >= 3
                         else float("nan"),
          "top10_overlap": overlap / k}


def depth(path) -> int:
  return sum(1 for choice in path if choice != 0)  # choice 0 is Identity in the macro space


def synflow(model, input_shape) -> float:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  weights = model.trainable_weights
  saved = [w.numpy() for w in weights]
  for weight in weights:
    weight.assign(tf.abs(weight))
  with tf.GradientTape() as tape:
    # Two all-ones images, not one: oneDNN's Conv2DBackpropFilter corrupted the heap (abort) on a
    # batch of one for the all-Identity network here (TF 2.21, TF_ENABLE_ONEDNN_OPTS=1). The score
    # doubles, which no ranking sees.
    total = tf.reduce_sum(model(tf.ones((2, *input_shape)), training=False))
  gradients = tape.gradient(total, weights)
  score = sum(float(tf.reduce_sum(g * w)) for g, w in zip(gradients, weights) if g is not None)
  for weight, value in zip(weights, saved):
    weight.assign(value)
  return float(np.log(max(score, 1e-30)))


def naswot(model, images) -> float:
  codes = []
  original = ops.activate

  def recording(x, kind):
    y = original(x, kind)
    if kind is not None:
      codes.append((y.numpy().reshape(len(images), -1) > 0).astype(np.float64))
    return y

  ops.activate = recording
  try:
    model(images, training=False)
  finally:
    ops.activate = original
  if not codes:
    return float("-inf")
  c = np.concatenate(codes, axis=1)
  kernel = c @ c.T + (1 - c) @ (1 - c).T
  return float(np.linalg.slogdet(kernel)[1])


def main(argv=None) -> None:
  args = parse_args(argv)
  start = time.time()
  truth = ground_truth.load_any(args.table)
  paths = truth.paths()
  count = min(60, len(paths)) if args.quick else (args.sample or len(paths))
  if count < len(paths):
    paths = [paths[i] for i in sorted(np.random.default_rng(args.seed).choice(len(paths), count, False))]
  space, accuracies = truth.space, truth.accuracies(paths)
  if args.table == "nasbench_macro":
    shape, data = (32, 32, 3), None
  else:
    state = json.load(open(args.table))
    data = data_config.DataConfig(**{**state["data"], "deterministic": True})
    shape = (data.resolution, data.resolution, data.channels)
  images = _images(data, shape, args.batch, args.seed)
  scores = {"flops": [truth.entry(p).flops for p in paths], "params": [truth.entry(p).params for p in paths],
            "depth": [depth(p) for p in paths], "synflow": [], "naswot": []}
  import keras  # pylint: disable=g-import-not-at-top
  for path in paths:
    keras.utils.set_random_seed(args.seed)
    model = model_lib.build_model(space.arch_from_indices(path), space, shape, 10)
    scores["synflow"].append(synflow(model, shape))
    scores["naswot"].append(naswot(model, images))
    keras.backend.clear_session()
  ceiling = ground_truth.noise_ceiling(truth)
  rows = {name: ranking(accuracies, values) for name, values in scores.items()}
  print(f"{truth.name}: {len(paths)} networks, test top-1 {accuracies.min():.2f}-{accuracies.max():.2f}%")
  print(f"noise ceiling ({ceiling['networks']} networks with two seeds): Kendall {ceiling['kendall']:.3f}, "
        f"top 10% {ceiling['kendall_top']:.3f}")
  print(f"{'estimate':10s} {'kendall':>8s} {'spearman':>9s} {'top10%':>7s} {'top10 overlap':>14s}")
  for name, row in rows.items():
    print(f"{name:10s} {row['kendall']:8.3f} {row['spearman']:9.3f} {row['kendall_top']:7.3f} "
          f"{row['top10_overlap']:14.2f}")
  result = {"table": truth.name, "networks": len(paths), "seeds": 1,
            "noise_ceiling_kendall": ceiling["kendall"], "noise_ceiling_top_kendall": ceiling["kendall_top"],
            **{f"{name}_kendall": row["kendall"] for name, row in rows.items()},
            **{f"{name}_spearman": row["spearman"] for name, row in rows.items()},
            **{f"{name}_top_kendall": row["kendall_top"] for name, row in rows.items()},
            **{key: None for key in NOT_MEASURED}, "not_measured": list(NOT_MEASURED),
            "wall_s": round(time.time() - start, 1)}
  print(json.dumps({key: _finite_or_none(value) for key, value in result.items()}))


def _finite_or_none(value):
  """JSON has no NaN: a statistic that cannot be computed yet (too few networks) is null."""
  return None if isinstance(value, float) and not np.isfinite(value) else value


def _images(data, shape, count, seed):
  """Normalised validation images of the table's data, or seeded noise for NAS-Bench-Macro (CIFAR-10
  is not on this machine)."""
  if data is None:
    return np.random.default_rng(seed).uniform(-1, 1, (count, *shape)).astype(np.float32)
  splits = data_sources.load(data)
  batch = next(iter(batches_lib.eval_dataset(splits, data, count, split="validation")))
  return batch[0].numpy()


if __name__ == "__main__":
  main()
