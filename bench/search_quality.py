r"""Does the search work? PC-NAS, One-Shot (EA, random search), random networks trained alone, the
most-FLOPs network and free proxies, judged on a ground-truth table (`studies/search_comparison.py`).

  python -m bench.search_quality                       # the whole study on the Fashion-MNIST table
  python -m bench.search_quality --quick               # one seed, one budget (0.5), half the steps
  python -m bench.search_quality --proxies_only        # the free proxies alone (minutes)
  python -m bench.search_quality --table=nasbench_macro --sample=200 --proxies_only

Ranking, against the table's test top-1 over every network it holds (the proxies and One-Shot) or over
the candidates of PC-NAS' last interval (its potentials): Kendall tau, Spearman, Kendall tau within the
truth's top 10%, top-10 overlap, for
  oneshot, oneshot_moving  the One-Shot supergraph's accuracy on the search's validation batches, BN
                  statistics of the batch / moving averages (mean over seeds);
  pcnas           PC-NAS' potentials of its last interval's candidates (mean over seeds);
  flops, params   the network's cost (from the table);
  depth           its non-Identity layers;
  synflow         Tanaka et al. 2020 at initialisation: all weights made positive, an all-ones input,
                  the sum over weights of weight x d(sum of logits)/d(weight); inference-mode BN;
  naswot          Mellor et al. 2021 at initialisation: the log-determinant of the Hamming-similarity
                  kernel of the ReLU codes of one batch of validation images (every activation of the
                  network, recorded through `ops.activate`).
The table's own seed-to-seed agreement (`noise_ceiling`) bounds what any estimate can reach.

Search, under latency budgets of 25%, 50% and 75% of the space's range (the searches' own LiteRT
latency table): regret (the best feasible network of the table minus the chosen one, test top-1 points)
and `top_percent` (the share of feasible networks that beat the chosen one), mean and standard error
over seeds, for pcnas, oneshot_ea, oneshot_random, random_alone and max_flops. Chosen networks the table
lacks are trained on demand with its schedule and added to it (commit the table after a run).
Everything resumes from `--work_dir`. Writes `<work_dir>/search_quality.png`; ends with one JSON line.
"""

import argparse
import json
import time

import numpy as np

from pcnas_tf import console

console.quiet_startup()

from pcnas_tf.data import data_config  # pylint: disable=g-import-not-at-top,g-bad-import-order
from pcnas_tf.data import sources as data_sources  # pylint: disable=g-import-not-at-top,g-bad-import-order
from pcnas_tf.data import batches as batches_lib  # pylint: disable=g-import-not-at-top,g-bad-import-order
from pcnas_tf.searcher import search_config  # pylint: disable=g-import-not-at-top,g-bad-import-order
from pcnas_tf.studies import ground_truth  # pylint: disable=g-import-not-at-top,g-bad-import-order
from pcnas_tf.studies import search_comparison as quality  # pylint: disable=g-import-not-at-top,g-bad-import-order
from pcnas_tf.training import optimizer_config  # pylint: disable=g-import-not-at-top,g-bad-import-order
from pcnas_tf.nn import model as model_lib
from pcnas_tf.nn import ops

TABLE = "benchmarks/ground_truth_fashion_mnist_14px.json"
NOT_MEASURED = ("pcnas_kendall", "oneshot_kendall", "pcnas_regret", "oneshot_ea_regret",
                "oneshot_random_regret", "random_alone_regret", "max_flops_regret", "pcnas_regret_se")


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--table", default=TABLE, help="A ground-truth JSON file, or nasbench_macro.")
  parser.add_argument("--sample", type=int, default=0, help="Score a seeded sample of this many "
                      "networks (0: all).")
  parser.add_argument("--batch", type=int, default=64, help="Images for NASWOT's kernel.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--quick", action="store_true", help="One seed, one budget (0.5), half the steps "
                      "per epoch; candidates outside the table are left out of the ranking.")
  parser.add_argument("--proxies_only", action="store_true", help="Only the free proxies.")
  parser.add_argument("--work_dir", default="runs/search_quality", help="Where the searches run.")
  parser.add_argument("--seeds", type=int, default=5, help="Seeds of supergraph training and search.")
  parser.add_argument("--budgets", default="0.25,0.5,0.75", help="Latency budgets, fractions of the range.")
  parser.add_argument("--warmup_epochs", type=int, default=12)
  parser.add_argument("--interval_epochs", type=int, default=3)
  parser.add_argument("--steps_per_epoch", type=int, default=150,
                      help="Supergraph steps per epoch: (12 + 8 x 3) x 150 = 5,400 steps, two networks "
                      "of the table's 2,700.")
  parser.add_argument("--num_samples", type=int, default=12, help="S: completions per candidate.")
  parser.add_argument("--candidates_trained", type=int, default=3,
                      help="At most this many of the ranked candidates that the table lacks are trained "
                      "on demand per seed, a seeded sample (0: all; each costs a network of the table, "
                      "about 3 minutes on one core here).")
  parser.add_argument("--run_seeds", default="",
                      help="Run only these of the seeds now (comma-separated), e.g. one share of them per "
                      "core in separate processes with --threads=1; a run without it then resumes every "
                      "search and reports on all seeds.")
  parser.add_argument("--threads", type=int, default=0,
                      help="TensorFlow intra- and inter-op threads (0: TensorFlow's default).")
  return parser.parse_args(argv)


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


def proxy_scores(truth, paths, data, shape, batch, seed) -> dict:
  """FLOPs, params, depth, and synflow and NASWOT at initialisation, per path."""
  import keras  # pylint: disable=g-import-not-at-top
  images = _images(data, shape, batch, seed)
  scores = {"flops": [truth.entry(p).flops for p in paths], "params": [truth.entry(p).params for p in paths],
            "depth": [depth(p) for p in paths], "synflow": [], "naswot": []}
  for path in paths:
    keras.utils.set_random_seed(seed)
    model = model_lib.build_model(truth.space.arch_from_indices(path), truth.space, shape, 10)
    scores["synflow"].append(synflow(model, shape))
    scores["naswot"].append(naswot(model, images))
    keras.backend.clear_session()
  return scores


def study_config(args, data) -> quality.StudyConfig:
  """The study's searches: the demo's search settings at the table's data and width."""
  budgets = tuple(args.budgets.split(","))
  seeds = tuple(range(args.seeds))
  if args.run_seeds:
    wanted = tuple(int(s) for s in args.run_seeds.split(","))
    if not set(wanted) <= set(seeds):
      raise SystemExit(f"--run_seeds={args.run_seeds} names seeds outside 0..{args.seeds - 1} "
                       f"(--seeds={args.seeds}).")
    seeds = wanted
  search = search_config.SearchConfig(
      space="macro", width=args.width, pool_size=5, num_samples=args.num_samples,
      warmup_epochs=args.warmup_epochs, interval_epochs=args.interval_epochs,
      steps_per_epoch=args.steps_per_epoch, batch_size=128,
      optimizer=optimizer_config.OptimizerConfig(0.1, 5e-4, 0.9, 1e-4), constraint="latency",
      budget=budgets[0], latency_backend="tflite", latency_batch=16, calibration_archs=20,
      eval_batch_size=256, eval_batches=4, strategy="one_device", data=data)
  return quality.StudyConfig(search=search, budgets=budgets, seeds=seeds,
                             ranking_budget=budgets[len(budgets) // 2],
                             train_candidates=not args.quick,
                             candidates_trained=args.candidates_trained)


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.quick:
    args.seeds, args.budgets, args.steps_per_epoch = 1, "0.5", args.steps_per_epoch // 2
  start = time.time()
  if args.threads:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  if args.table == "nasbench_macro":
    shape, data = (32, 32, 3), None
  else:
    state = ground_truth.read_state(args.table)
    data = data_config.DataConfig(**{**state["data"], "deterministic": True})
    shape = (data.resolution, data.resolution, data.channels)
    args.width = state["width"]
  study = None
  if data is not None and not args.proxies_only:
    from pcnas_tf.studies import ground_truth_build  # pylint: disable=g-import-not-at-top
    build_config = ground_truth_build.config_of(state)
    train = ground_truth_build.train_alone(args.work_dir + "/" + ground_truth_build.SCRATCH_DIR)
    study = quality.run_study(study_config(args, data), args.table, args.work_dir,
                              lambda archs: ground_truth_build.add_networks(
                                  args.table, build_config, archs, train, "chosen by a search",
                                  progress=False), progress=False)
  if args.run_seeds:
    print(f"seeds {args.run_seeds} done; run without --run_seeds to report on every seed")
    return
  # The proxies over the table as it is now (with the networks the study added).
  truth = ground_truth.load_any(args.table)
  paths = truth.paths(drawn_only=True)  # a uniform sample: not the networks searches chose
  count = args.sample or len(paths)
  if count < len(paths):
    paths = [paths[i] for i in sorted(np.random.default_rng(args.seed).choice(len(paths), count, False))]
  accuracies = truth.accuracies(paths)
  scores = proxy_scores(truth, paths, data, shape, args.batch, args.seed)
  ceiling = ground_truth.noise_ceiling(truth)
  rows = {name: quality.ranking(accuracies, values) for name, values in scores.items()}
  if study:
    rows["oneshot"] = study["rankings"]["oneshot_batch"]
    rows["oneshot_moving"] = study["rankings"]["oneshot_moving"]
    rows["pcnas"] = study["rankings"]["pcnas_potentials"]
  print(f"{truth.name}: {len(truth.entries)} networks, test top-1 {accuracies.min():.2f}-{accuracies.max():.2f}%")
  print(f"noise ceiling ({ceiling['networks']} networks with two seeds): Kendall {ceiling['kendall']:.3f}, "
        f"top 10% {ceiling['kendall_top']:.3f}")
  print(f"{'estimate':15s} {'networks':>8s} {'kendall':>8s} {'spearman':>9s} {'top10%':>7s} {'top10 overlap':>14s}")
  for name, row in rows.items():
    print(f"{name:15s} {row['networks']:8.0f} {row['kendall']:8.3f} {row['spearman']:9.3f} "
          f"{row['kendall_top']:7.3f} {row['top10_overlap']:14.2f}")
  result = {"table": truth.name, "networks": len(truth.entries), "seeds": len(study["config"]["seeds"]) if study else 0,
            "noise_ceiling_kendall": ceiling["kendall"], "noise_ceiling_top_kendall": ceiling["kendall_top"],
            "noise_ceiling_networks": ceiling["networks"],
            **{f"{name}_kendall": row["kendall"] for name, row in rows.items()},
            **{f"{name}_spearman": row["spearman"] for name, row in rows.items()},
            **{f"{name}_top_kendall": row["kendall_top"] for name, row in rows.items()}}
  if study:
    print(f"\n{'method':15s} {'regret':>8s} {'se':>6s} {'top %':>6s}   per budget")
    for method, row in study["summary"].items():
      budgets = " ".join(f"{b}:{v:.2f}" for b, v in row["per_budget"].items())
      print(f"{method:15s} {row['regret']:8.2f} {row['regret_se']:6.2f} {row['top_percent']:6.1f}   {budgets}")
      result[f"{method}_regret"] = row["regret"]
      result[f"{method}_regret_se"] = row["regret_se"]
      result[f"{method}_top_percent"] = row["top_percent"]
    result["random_alone_networks"] = study["random_alone_networks"]
    picture = args.work_dir + "/search_quality.png"
    quality.plot(study, truth, {name: (paths, values) for name, values in scores.items()}, picture)
    print(f"picture: {picture}")
    result["picture"] = picture
  else:
    result["not_measured"] = [key for key in NOT_MEASURED if key not in result]
  result["wall_s"] = round(time.time() - start, 1)
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
