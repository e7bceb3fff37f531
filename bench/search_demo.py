"""Benchmark: the demo search end to end, its phases, prefix reuse, and search cost vs one training.

  .venv/bin/python -m bench.search_demo [--quick]

1. Runs the demo search (flags/demo.cfg) in a fresh work directory and reports wall time per phase.
2. On the trained supergraph, re-scores every interval's candidates with the same completions and
   batches twice, with prefix reuse and naively, and reports the speedup and the largest potential
   difference (they must agree to float tolerance).
3. Trains the chosen architecture alone for the same number of epochs, steps and batch, and reports
   search wall time / stand-alone training wall time (the paper's search costs about 0.67 of its
   300-epoch final training).
Ends with one JSON line.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from absl import flags

import pcnas_tf  # pylint: disable=unused-import  (sets the Keras backend)
import tensorflow as tf

from bench import supergraph_step
from pcnas_tf.data import batches as batches_lib
from pcnas_tf.nn import model as model_lib
from pcnas_tf.searcher import oracle as oracle_lib
from pcnas_tf.searcher import potential as potential_lib
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.cli import search_flags

_DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags", "demo.cfg")


def _demo_config(quick):
  argv = [sys.argv[0], f"--flagfile={_DEMO}"]
  if quick:
    argv += ["--warmup_epochs=1", "--steps_per_epoch=20", "--num_samples=4"]
  flags.FLAGS(argv)
  return search_flags.config_from_flags()


def _time_evaluations(search, result, reuse):
  """Re-scores every interval's candidates; returns (seconds, potentials)."""
  batches = batches_lib.ValidationBatches(search.splits, search.config.data, search.config.eval_batch_size,
                                       search.config.eval_batches)
  evaluator = potential_lib.PotentialEvaluator(
      search.trainer.supergraph, [batches.batch(i) for i in range(len(batches))],
      search.config.bn_mode, reuse)
  rng, potentials, seconds = np.random.default_rng(0), [], 0.0
  for record in result["intervals"]:
    completions = {tuple(c): search.constraint.completions(tuple(c), search.config.num_samples, rng)
                   for c in record["candidates"]}
    start = time.perf_counter()
    scored = evaluator.potentials(completions)
    seconds += time.perf_counter() - start
    potentials += [scored[tuple(c)] for c in record["candidates"]]
  return seconds, np.array(potentials)


def _oracle_overhead_ms(num_choices, pool_size, work_dir):
  """keras-tuner bookkeeping per trial (create, report, end), scores made up: the Oracle's own cost."""
  oracle = oracle_lib.PCNASOracle(num_choices, pool_size, seed=0)
  oracle._set_project_dir(work_dir, "overhead")  # pylint: disable=protected-access
  rng, trials, start = np.random.default_rng(0), 0, time.perf_counter()
  for _ in num_choices:
    oracle.start_interval()
    while (trial := oracle.create_trial("chief")).status == "RUNNING":
      oracle_lib.report(oracle, trial, {oracle_lib.POTENTIAL: float(rng.random())})
      trials += 1
  return (time.perf_counter() - start) * 1e3 / trials, trials


def _standalone_seconds(search, arch):
  """Wall time of training `arch` alone for the search's epochs, steps and batch."""
  config = search.config
  model = model_lib.build_model(arch, search.space, search.splits.image_shape, search.splits.num_classes)
  train_step, _ = supergraph_step._standalone_steps(model, config.batch_size)  # pylint: disable=protected-access
  dataset = batches_lib.train_pipeline(search.splits, config.data, config.batch_size)
  iterator = iter(dataset)
  images, labels = next(iterator)
  train_step(images, labels)  # trace outside the timed loop, as the search's trace is tiny too
  start = time.perf_counter()
  for _ in range(search.total_epochs * search.steps_per_epoch):
    images, labels = next(iterator)
    train_step(images, labels)
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="A shorter search (1 warm-up epoch, 20 steps).")
  args = parser.parse_args()
  config = _demo_config(args.quick)
  work_dir = tempfile.mkdtemp(prefix="pcnas_search_demo_")
  start = time.perf_counter()
  result = search_lib.run_search(config, work_dir, overwrite=True, progress=False)
  wall = time.perf_counter() - start
  timings = result["timings"]
  print(f"search wall {wall:.1f} s: warm-up {timings['warmup_s']:.1f} s, interval training "
        f"{timings['train_s']:.1f} s, potential evaluation {timings['eval_s']:.1f} s")
  search = search_lib.Search(config, work_dir, progress=False)
  search._restore()  # pylint: disable=protected-access  (the trained supergraph)
  naive_s, naive = _time_evaluations(search, result, reuse=False)
  reuse_s, reused = _time_evaluations(search, result, reuse=True)
  finite = ~np.isnan(naive)
  max_diff = float(np.abs(naive[finite] - reused[finite]).max()) if finite.any() else 0.0
  print(f"potential evaluation: naive {naive_s:.1f} s, prefix reuse {reuse_s:.1f} s, "
        f"speedup {naive_s / reuse_s:.2f}x, max potential difference {max_diff:.2g}")
  overhead_ms, trials = _oracle_overhead_ms(search.num_choices, config.pool_size, work_dir)
  candidates = sum(len(record["candidates"]) for record in result["intervals"])
  print(f"Oracle bookkeeping: {overhead_ms:.1f} ms per trial, {trials} trials for {candidates} "
        f"candidates (one trial per pool member)")
  alone_s = _standalone_seconds(search, tuple(result["chosen"]["arch"]))
  print(f"chosen {result['chosen']['arch_string']} trained alone for {search.total_epochs} epochs: "
        f"{alone_s:.1f} s; search / stand-alone = {wall / alone_s:.2f}")
  print(json.dumps({
      "wall_s": round(wall, 1), "warmup_s": round(timings["warmup_s"], 1),
      "train_s": round(timings["train_s"], 1), "eval_s": round(timings["eval_s"], 1),
      "eval_speedup_vs_naive": round(naive_s / reuse_s, 3), "eval_max_potential_diff": max_diff,
      "oracle_ms_per_trial": round(overhead_ms, 2), "trials": trials, "candidates": candidates,
      "standalone_s": round(alone_s, 1), "search_over_standalone": round(wall / alone_s, 3),
      "chosen": result["chosen"]["arch_string"], "chosen_potential": result["chosen"]["potential"],
      "epochs": search.total_epochs, "quick": args.quick}))


if __name__ == "__main__":
  tf.get_logger().setLevel("ERROR")
  main()
