"""Benchmark: the supergraph's step on a path against the stand-alone model of that architecture.

  .venv/bin/python -m bench.supergraph_step [--quick]

For random architectures of the small space at a CPU-sized width and resolution, times the supergraph's
train step (PathSGD, one traced graph for every path) and its forward pass against the stand-alone Keras
model of the same architecture trained by `keras.optimizers.SGD` (nesterov, same batch), measured side
by side, alternating call by call: each round's supergraph/stand-alone ratio, median over rounds (the
stable estimator on this shared VM), then the median over paths. Prints a table (median times), then
one JSON line. Both spaces (`--space`): small and large. Then, in a fresh process, the resident memory
that building a large-space supergraph (width 1.0, 224x224, 1000 classes) and its optimizer adds,
over the bytes of its variables (packed weights, statistics, shared layers) and momentum:
`memory_ratio`. The profile (`--noprofile` skips it): the supergraph's fixed cost per call over the
stand-alone model's, at batch 1 and 16x16 where the arithmetic is negligible, and the graph nodes one
forward runs, against the stand-alone model's, with the dead nodes of unselected branches that the
lowered switch_cases schedule too. Targets: ratios <= 1.03, traces == 1, memory_ratio <= 1.3.
"""

import argparse
import json
import multiprocessing
import os
import time

import numpy as np

import pcnas_tf  # pylint: disable=unused-import  (sets the Keras backend)
import keras
import tensorflow as tf

from pcnas_tf.nn import model as model_lib
from pcnas_tf.searcher import pool as pool_lib
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import supergraph_trainer as trainer_lib


def _standalone_steps(model, batch_size):
  optimizer = keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True)
  optimizer.build(model.trainable_variables)

  @tf.function
  def train_step(images, labels):
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
      loss = tf.nn.compute_average_loss(per_example, global_batch_size=batch_size)
    optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    return loss

  @tf.function
  def forward(images):
    return model(images, training=False)

  return train_step, forward


def _round_times(fns, repeats):
  """Times of each of `fns` in each of `repeats` rounds, called in turn (A B C D, then D C B A, ...) so
  that load changes on a shared machine fall on all of them alike: an array [repeats, len(fns)]."""
  times = np.zeros((repeats, len(fns)))
  for round_ in range(repeats):
    order = range(len(fns)) if round_ % 2 == 0 else reversed(range(len(fns)))
    for index in order:
      start = time.perf_counter()
      np.asarray(fns[index]())  # wait for the result
      times[round_, index] = time.perf_counter() - start
  return times


def _paired_times(trainer, iterator, images, labels, space, path, repeats, warmup):
  """`_round_times` of the supergraph's train step, the stand-alone model's, the supergraph's forward
  and the stand-alone forward on `path`, after `warmup` calls of each (tracing the stand-alone steps)."""
  shape = tuple(images.shape[1:])
  model = model_lib.build_model(space.arch_from_indices(path), space, shape, 10)
  alone_train, alone_forward = _standalone_steps(model, int(images.shape[0]))
  path_tensor = tf.constant(path, tf.int32)
  for _ in range(warmup):
    trainer.train_step(iterator, path), alone_train(images, labels), alone_forward(images)
    trainer.evaluate(images, labels, path_tensor)
  return _round_times(
      [lambda: trainer.train_step(iterator, path)[0], lambda: alone_train(images, labels),
       lambda: trainer.evaluate(images, labels, path_tensor), lambda: alone_forward(images)],
      repeats)


def _rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory(queue, width, resolution, num_classes):
  """In a fresh process: (resident bytes a large-space supergraph and its optimizer add, bytes of its
  variables and momentum)."""
  tf.zeros([1]) + 1  # the runtime's own start-up, not the supergraph's
  before = _rss_bytes()
  trainer = trainer_lib.SupergraphTrainer(space_lib.large_space(width), (resolution, resolution, 3),
                                          num_classes, tf.distribute.OneDeviceStrategy("/cpu:0"), 32)
  added = _rss_bytes() - before
  def size(variables):
    return sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size for v in variables)
  queue.put((added, size(trainer.supergraph.variables) + size(trainer.optimizer.slots)))


def memory_ratio(width=1.0, resolution=224, num_classes=1000):
  """Resident memory added by building the supergraph and optimizer over their state's bytes."""
  context = multiprocessing.get_context("spawn")
  queue = context.Queue()
  process = context.Process(target=_memory, args=(queue, width, resolution, num_classes))
  process.start()
  process.join(timeout=1800)
  if process.exitcode != 0 or queue.empty():
    raise RuntimeError(f"The memory measurement's process failed (exit code {process.exitcode}).")
  return queue.get()


def _ratios(space, args, paths, repeats):
  """Median over `paths` random paths of the paired train-step and forward ratios; traces."""
  shape = (args.resolution, args.resolution, 3)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  trainer = trainer_lib.SupergraphTrainer(space, shape, 10, strategy, args.batch, learning_rate=0.01)
  images = tf.random.normal((args.batch,) + shape)
  labels = tf.random.uniform((args.batch,), 0, 10, tf.int32)
  iterator = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
  rng = np.random.default_rng(0)
  num_choices = [len(layer.choices) for layer in space.layers]
  rows = []
  print(f"{space.name}: {'arch':>24} {'sg train ms':>12} {'alone train ms':>15} {'ratio':>6} "
        f"{'sg fwd ms':>10} {'alone fwd ms':>13} {'ratio':>6}")
  for _ in range(paths):
    path = pool_lib.complete((), num_choices, rng)
    arch = space.arch_from_indices(path)
    times = _paired_times(trainer, iterator, images, labels, space, path, repeats, warmup=2)
    # The ratio of each round's adjacent calls, then the median over rounds: the machine's speed
    # drifts between rounds, much less within one (the minimum of each column, the older estimator,
    # swung by +-10% between runs here).
    train_ratio, forward_ratio = (float(np.median(times[:, a] / times[:, b])) for a, b in ((0, 1), (2, 3)))
    sg_train, sa_train, sg_fwd, sa_fwd = np.median(times, axis=0)
    rows.append((train_ratio, forward_ratio))
    print(f"{space.name}: {space.arch_to_string(arch):>24} {sg_train * 1e3:12.1f} {sa_train * 1e3:15.1f} "
          f"{train_ratio:6.3f} {sg_fwd * 1e3:10.1f} {sa_fwd * 1e3:13.1f} {forward_ratio:6.3f}")
  # trace_count counts the train-step trace and the eval-step trace.
  return (float(np.median([r[0] for r in rows])), float(np.median([r[1] for r in rows])),
          trainer.trace_count - 1)


def _graph_nodes(space, shape, path):
  """Nodes of the supergraph's traced forward (the evaluation step) that one call on `path` runs:
  the top-level graph plus the selected branch of each mixop's switch_case; the unselected branches'
  nodes (scheduled as dead nodes once TensorFlow lowers the switch_case); and the stand-alone
  model's forward."""
  trainer = trainer_lib.SupergraphTrainer(space, shape, 10, tf.distribute.OneDeviceStrategy("/cpu:0"), 1)
  images, labels = tf.zeros((1,) + shape), tf.zeros((1,), tf.int32)
  graph = trainer._eval_step.get_concrete_function(  # pylint: disable=protected-access
      images, labels, tf.constant(path, tf.int32)).graph
  functions = graph._functions  # pylint: disable=protected-access
  top = graph.get_operations()
  selected = dead = 0
  cases = [op for op in top if op.type in ("Case", "StatelessCase")]
  for op, mixop, choice in zip(cases, trainer.supergraph.mixops, path):
    sizes = [len(functions[f.name].graph.get_operations()) for f in op.get_attr("branches")]
    chosen = int(mixop.branch_of[choice])
    selected += sizes[chosen]
    dead += sum(sizes) - sizes[chosen]
  model = model_lib.build_model(space.arch_from_indices(path), space, shape, 10)
  alone = tf.function(lambda x: model(x, training=False)).get_concrete_function(images).graph
  return {"supergraph": len(top) + selected, "dead": dead, "standalone": len(alone.get_operations()),
          "switch_cases": len(cases)}


def fixed_overhead(space, paths, repeats, resolution=16):
  """The supergraph's cost per call beyond the stand-alone model's, where the arithmetic is
  negligible (batch 1 at `resolution`): median over paths of the paired differences of a forward
  pass and of a train step (ms), with the graph nodes of one forward (`_graph_nodes`)."""
  shape = (resolution, resolution, 3)
  trainer = trainer_lib.SupergraphTrainer(space, shape, 10, tf.distribute.OneDeviceStrategy("/cpu:0"), 1,
                                          learning_rate=0.01)
  images, labels = tf.random.normal((1,) + shape), tf.zeros((1,), tf.int32)
  iterator = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
  rng = np.random.default_rng(1)
  num_choices = [len(layer.choices) for layer in space.layers]
  forward, train = [], []
  for _ in range(paths):
    path = pool_lib.complete((), num_choices, rng)
    times = _paired_times(trainer, iterator, images, labels, space, path, repeats, warmup=3)
    train.append(float(np.median(times[:, 0] - times[:, 1])))
    forward.append(float(np.median(times[:, 2] - times[:, 3])))
  nodes = _graph_nodes(space, shape, path)
  return {"forward_ms": 1e3 * float(np.median(forward)), "train_ms": 1e3 * float(np.median(train)),
          "nodes": nodes}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="5 paths, fewer repeats.")
  parser.add_argument("--space", choices=("small", "large", "both"), default="both")
  parser.add_argument("--paths", type=int, default=20)
  parser.add_argument("--width", type=float, default=0.35)
  parser.add_argument("--resolution", type=int, default=64)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--threads", type=int, default=1,
                      help="intra-op threads (1: the stable setting on a shared machine)")
  parser.add_argument("--noprofile", dest="profile", action="store_false",
                      help="skip the fixed per-call cost (batch 1, 16x16) and the graph's node counts")
  parser.add_argument("--nomemory", dest="memory", action="store_false",
                      help="skip the memory measurement (large space, width 1.0, 224x224)")
  args = parser.parse_args()
  paths, repeats = (5, 10) if args.quick else (args.paths, args.repeats)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  summary = {}
  for name in ("small", "large"):
    if args.space in (name, "both"):
      space = space_lib.small_space(args.width) if name == "small" else space_lib.large_space(args.width)
      train_ratio, forward_ratio, traces = _ratios(space, args, paths, repeats)
      prefix = "" if name == "small" else "large_"
      summary.update({f"{prefix}train_step_ratio": round(train_ratio, 4),
                      f"{prefix}forward_ratio": round(forward_ratio, 4), f"{prefix}traces": traces})
      if args.profile:
        fixed = fixed_overhead(space, 3 if args.quick else 5, 3 * repeats)
        nodes = fixed["nodes"]
        print(f"{name}: fixed cost per call (batch 1, 16x16): forward +{fixed['forward_ms']:.2f} ms, "
              f"train step +{fixed['train_ms']:.2f} ms over the stand-alone model; one forward runs "
              f"{nodes['supergraph']} graph nodes ({nodes['switch_cases']} switch_cases) and schedules "
              f"{nodes['dead']} dead ones of unselected branches, against {nodes['standalone']}")
        summary.update({f"{prefix}fixed_forward_overhead_ms": round(fixed["forward_ms"], 3),
                        f"{prefix}fixed_train_overhead_ms": round(fixed["train_ms"], 3),
                        f"{prefix}forward_nodes": nodes["supergraph"],
                        f"{prefix}dead_branch_nodes": nodes["dead"],
                        f"{prefix}standalone_forward_nodes": nodes["standalone"]})
  summary["traces"] = max(v for k, v in summary.items() if k.endswith("traces"))
  if args.memory:
    added, state = memory_ratio()
    print(f"large space, width 1.0, 224x224, 1000 classes: building supergraph and optimizer added "
          f"{added / 2**30:.2f} GiB resident for {state / 2**30:.2f} GiB of variables and momentum")
    summary.update({"memory_added_gib": round(added / 2**30, 3), "state_gib": round(state / 2**30, 3),
                    "memory_ratio": round(added / state, 3)})
  summary.update({"paths": paths, "width": args.width, "resolution": args.resolution,
                  "batch": args.batch, "threads": args.threads,
                  "estimator": f"median of {repeats} paired ratios"})
  print(json.dumps(summary))


if __name__ == "__main__":
  main()
