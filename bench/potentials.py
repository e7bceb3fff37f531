"""Benchmark: potential evaluation, naive against prefix reuse against the shared-node evaluator.

  .venv/bin/python -m bench.potentials [--quick]

On a briefly trained supergraph (the ratios do not depend on its accuracy), scores the candidates of
an early and a late interval of the small space (P=5 pool members, N=10 operators, S=100 completions
each, K=4 batches) and every interval of the demo's macro space (its P, S, K, width and resolution) in
three ways, interleaved, one thread:
  * naive: every completion from the images, one call;
  * prefix reuse (the evaluator before the shared-node tree, kept here as the reference): each pool
    member's prefix and each candidate's mixop once per batch, then each completion's suffix one
    mixop call at a time;
  * the evaluator: every distinct (batch, path prefix) node once, a path's own suffix in one call.
The ideal speedup is the naive cost over the cost of the distinct nodes, both in FLOPs (`space.cost`:
stem, mixops, head); `share_of_ideal` = measured speedup / ideal. Potentials must equal the naive ones.
Ends with one JSON line.
"""

import argparse
import collections
import json
import time

import numpy as np

import pcnas_tf  # pylint: disable=unused-import  (sets the Keras backend)
import tensorflow as tf

from pcnas_tf.searcher import pool as pool_lib
from pcnas_tf.searcher import potential as potential_lib
from pcnas_tf.space import cost as cost_lib
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import supergraph_trainer as trainer_lib


class PrefixReuse:
  """Today's evaluator before the tree, for the comparison: prefix per member, suffix per mixop."""

  def __init__(self, evaluator):
    self.evaluator = evaluator
    supergraph, batch_stats = evaluator.supergraph, evaluator.batch_stats
    self._head = tf.function(lambda x, labels: potential_lib._correct(  # pylint: disable=protected-access
        supergraph.head(x, batch_stats=batch_stats), labels))

  def accuracies(self, completions):
    ev, results = self.evaluator, {}
    num_layers, batches = len(ev.supergraph.mixops), ev.batches
    by_member = collections.defaultdict(list)
    for candidate in completions:
      by_member[candidate[:-1]].append(candidate)
    for member, candidates in by_member.items():
      prefix = []
      for images, _ in batches:
        x = ev._stem(images)  # pylint: disable=protected-access
        for index, choice in enumerate(member):
          x = ev._mixop_fns[index](x, tf.constant(choice, tf.int32))  # pylint: disable=protected-access
        prefix.append(x)
      for candidate in candidates:
        layer = len(candidate) - 1
        step = [ev._mixop_fns[layer](x, tf.constant(candidate[-1], tf.int32)) for x in prefix]  # pylint: disable=protected-access
        accuracies = []
        for j, path in enumerate(completions[candidate]):
          x, labels = step[j % len(batches)], batches[j % len(batches)][1]
          for index in range(layer + 1, num_layers):
            x = ev._mixop_fns[index](x, tf.constant(path[index], tf.int32))  # pylint: disable=protected-access
          accuracies.append(int(self._head(x, labels)) / int(labels.shape[0]))
        results[candidate] = accuracies
    return results


def ideal_speedup(space, input_shape, num_classes, completions, num_batches):
  """Naive FLOPs over the FLOPs of the distinct (batch, prefix) nodes (stems, mixops, heads)."""
  layers = cost_lib.layer_costs(space, input_shape)
  stem = cost_lib.stem_cost(space, input_shape).flops
  head = cost_lib.head_cost(space, input_shape, num_classes).flops
  naive, nodes, leaves, batches = 0, set(), set(), set()
  for paths in completions.values():
    for j, path in enumerate(paths):
      k = j % num_batches
      naive += stem + head + sum(layers[index][choice].flops for index, choice in enumerate(path))
      nodes.update((k, tuple(path[:depth])) for depth in range(1, len(path) + 1))
      leaves.add((k, tuple(path)))
      batches.add(k)
  shared = len(batches) * stem + len(leaves) * head + sum(layers[len(p) - 1][p[-1]].flops for _, p in nodes)
  return naive / shared


def _trained_supergraph(space, resolution, batch, steps, seed=0):
  shape = (resolution, resolution, 3)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  trainer = trainer_lib.SupergraphTrainer(space, shape, 10, strategy, batch, learning_rate=0.05)
  rng = np.random.default_rng(seed)
  images = tf.random.stateless_normal((batch,) + shape, seed=(seed, 1))
  labels = tf.random.stateless_uniform((batch,), (seed, 2), 0, 10, tf.int32)
  iterator = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
  num_choices = [len(layer.choices) for layer in space.layers]
  for _ in range(steps):
    trainer.train_step(iterator, pool_lib.complete((), num_choices, rng))
  return trainer.supergraph, shape


def _batches(shape, batch, count, seed=3):
  images = tf.random.stateless_normal((count, batch) + shape, seed=(seed, 1))
  labels = tf.random.stateless_uniform((count, batch), (seed, 2), 0, 10, tf.int32)
  return [(images[i], labels[i]) for i in range(count)]


def _interval(num_choices, layer, pool_size, samples, rng):
  """Completions of the candidates of a random pool of `pool_size` members deciding mixops < `layer`."""
  members = sorted({tuple(int(rng.integers(n)) for n in num_choices[:layer]) for _ in range(pool_size)})
  candidates = pool_lib.extend(members, num_choices)
  return {c: [pool_lib.complete(c, num_choices, rng) for _ in range(samples)] for c in candidates}


def _time(fn, repeats):
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    best = min(best, time.perf_counter() - start)
  return best, result


def _measure(name, evaluator, reference, completions, space, shape, repeats):
  naive_ev = potential_lib.PotentialEvaluator(evaluator.supergraph, evaluator.batches,
                                              "batch" if evaluator.batch_stats else "moving", False)
  for fn in (naive_ev.accuracies, reference.accuracies, evaluator.accuracies):  # trace outside timing
    fn(completions)
  times = {"naive": float("inf"), "prefix": float("inf"), "tree": float("inf")}
  results = {}
  for _ in range(repeats):  # interleaved, minimum of each
    for key, fn in (("naive", naive_ev.accuracies), ("prefix", reference.accuracies),
                    ("tree", evaluator.accuracies)):
      seconds, results[key] = _time(lambda fn=fn: fn(completions), 1)
      times[key] = min(times[key], seconds)
  count = sum(len(p) for p in completions.values())
  diff = max(abs(float(np.mean(results["tree"][c])) - float(np.mean(results["naive"][c])))
             for c in completions)
  prefix_diff = max(abs(float(np.mean(results["prefix"][c])) - float(np.mean(results["naive"][c])))
                    for c in completions)
  ideal = ideal_speedup(space, shape, 10, completions, len(evaluator.batches))
  work = evaluator.last_work
  row = {"interval": name, "completions": count, "distinct_paths": work.distinct,
         "naive_s": times["naive"], "prefix_s": times["prefix"], "tree_s": times["tree"],
         "speedup_vs_naive": times["naive"] / times["tree"],
         "prefix_speedup_vs_naive": times["naive"] / times["prefix"],
         "ideal_speedup": ideal, "share_of_ideal": times["naive"] / times["tree"] / ideal,
         "ms_per_completion": times["tree"] * 1e3 / count, "calls": work.calls,
         "max_potential_diff": diff, "prefix_max_potential_diff": prefix_diff}
  print(f"{name:>14} {count:6d} {work.distinct:6d} {times['naive']:8.2f} {times['prefix']:8.2f} "
        f"{times['tree']:8.2f} {row['speedup_vs_naive']:7.2f} {ideal:7.2f} {row['share_of_ideal']:6.2f} "
        f"{diff:6.2g}")
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="S=20, one repeat, two demo intervals.")
  parser.add_argument("--width", type=float, default=0.35)
  parser.add_argument("--resolution", type=int, default=32)
  parser.add_argument("--eval_batch", type=int, default=32)
  parser.add_argument("--samples", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--train_steps", type=int, default=20)
  parser.add_argument("--bn_mode", default="batch", choices=potential_lib.BN_MODES)
  args = parser.parse_args()
  samples, repeats = (20, 1) if args.quick else (args.samples, args.repeats)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  tf.config.threading.set_intra_op_parallelism_threads(1)
  rng = np.random.default_rng(0)
  print(f"{'interval':>14} {'compl':>6} {'dist':>6} {'naive s':>8} {'prefix s':>8} {'tree s':>8} "
        f"{'speedup':>7} {'ideal':>7} {'share':>6} {'maxdiff':>6}")
  rows, traces = [], 0
  setups = [("small", space_lib.small_space(args.width), args.resolution, args.eval_batch, 4, 5, samples,
             [1, 18])]
  demo_space = space_lib.macro_space(0.25)
  demo_layers = list(range(demo_space.num_layers))
  setups.append(("demo", demo_space, 28, 256, 4, 5, 12, demo_layers[:2] if args.quick else demo_layers))
  for name, space, resolution, batch, num_batches, pool_size, per_candidate, layers in setups:
    supergraph, shape = _trained_supergraph(space, resolution, min(batch, 64), args.train_steps)
    evaluator = potential_lib.PotentialEvaluator(supergraph, _batches(shape, batch, num_batches),
                                                 args.bn_mode)
    reference = PrefixReuse(evaluator)
    num_choices = [len(layer.choices) for layer in space.layers]
    for layer in layers:
      completions = _interval(num_choices, layer, pool_size, per_candidate, rng)
      rows.append(_measure(f"{name} l={layer}", evaluator, reference, completions, space, shape, repeats))
    traces += evaluator.traces()
    pieces = 2 + 2 * space.num_layers  # stem, whole network, a mixop and a suffix per layer
    print(f"{name}: {evaluator.traces()} traces for at most {pieces} pieces")

  def total(key, subset):
    return sum(row[key] for row in subset)

  small = [row for row in rows if row["interval"].startswith("small")]
  demo = [row for row in rows if row["interval"].startswith("demo")]
  speedup = total("naive_s", small) / total("tree_s", small)
  # The ideal over both small intervals: naive FLOPs over shared FLOPs, weighted as the times are.
  ideal = total("naive_s", small) / sum(row["naive_s"] / row["ideal_speedup"] for row in small)
  summary = {
      "speedup_vs_naive": round(speedup, 3), "ideal_speedup": round(ideal, 3),
      "share_of_ideal": round(speedup / ideal, 3),
      "prefix_speedup_vs_naive": round(total("naive_s", small) / total("prefix_s", small), 3),
      "demo_speedup_vs_naive": round(total("naive_s", demo) / total("tree_s", demo), 3),
      "demo_prefix_speedup_vs_naive": round(total("naive_s", demo) / total("prefix_s", demo), 3),
      "demo_ideal_speedup": round(total("naive_s", demo) /
                                  sum(row["naive_s"] / row["ideal_speedup"] for row in demo), 3),
      "max_potential_diff": max(row["max_potential_diff"] for row in rows),
      "ms_per_completion": round(total("tree_s", small) * 1e3 / total("completions", small), 3),
      "demo_ms_per_completion": round(total("tree_s", demo) * 1e3 / total("completions", demo), 3),
      "traces": traces, "samples": samples, "bn_mode": args.bn_mode, "quick": args.quick,
      "intervals": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
                    for row in rows]}
  print(json.dumps(summary))


if __name__ == "__main__":
  tf.get_logger().setLevel("ERROR")
  main()
