r"""Builds (or resumes) a ground-truth table: networks of the macro space, each trained alone.

  python -m pcnas_tf.ground_truth_main --flagfile=flags/ground_truth.cfg      # or: bazel run //pcnas_tf:ground_truth
  python -m pcnas_tf.ground_truth_main --flagfile=flags/ground_truth.cfg --add_archs=01221020,22222222
  python -m pcnas_tf.ground_truth_main --flagfile=flags/ground_truth.cfg --limit=10

The table (--output) is rewritten atomically after every training: stop the build anywhere and run the
same command again to continue. A table built with another schedule, split or draw is refused with the
differing field named. --add_archs trains the given networks on demand (idempotent). Prints the noise
ceiling (seed-to-seed Kendall tau) at the end.
"""

from pcnas_tf import console  # pylint: disable=g-bad-import-order

console.quiet_startup()  # before anything below imports TensorFlow

import dataclasses
import os
import sys

from absl import flags

from pcnas_tf.cli import data_flags
from pcnas_tf.cli import optimizer_flags
from pcnas_tf.cli import app
from pcnas_tf import errors
from pcnas_tf.studies import ground_truth
from pcnas_tf.studies import ground_truth_build

_DEFAULT_FLAGFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "flags", "ground_truth.cfg")

flags.DEFINE_string("output", "benchmarks/ground_truth_fashion_mnist_14px.json", "The table's JSON file.")
flags.DEFINE_string("work_root", "runs/ground_truth_14px", "Scratch directory of the training in progress.")
flags.DEFINE_float("width", 0.25, "Width multiplier of the macro space (> 0).")
flags.DEFINE_integer("networks", 200, "Distinct networks drawn uniformly (>= 1).", lower_bound=1)
flags.DEFINE_integer("second_seed_every", 4, "Every k-th drawn network is trained with a second seed "
                     "too (0: none); these come first (>= 0).", lower_bound=0)
flags.DEFINE_integer("draw_seed", 0, "Seed of the draw of networks (>= 0).", lower_bound=0)
flags.DEFINE_integer("epochs", 1, "Training epochs per network (>= 1).")
flags.DEFINE_integer("steps_per_epoch", 2700, "Steps per epoch (>= 1).")
flags.DEFINE_integer("batch_size", 128, "Batch size (>= 1).")
flags.DEFINE_integer("eval_batch_size", 500, "Batch size of validation and test evaluation (>= 1).")
flags.DEFINE_integer("limit", None, "Stop after this many trainings (>= 1; the build resumes later).",
                     lower_bound=1)
flags.DEFINE_list("add_archs", [], "Networks (compact strings) to train on demand and add.")
flags.DEFINE_boolean("progress", True, "Show a progress bar.")
flags.DEFINE_boolean("latency", False, "Instead of training: time every trained network with LiteRT (one "
                     "thread, batch --latency_batch) and predict it with the searches' latency table; "
                     "run it with nothing else running on the machine.")
flags.DEFINE_integer("latency_batch", 16, "Batch of the latency timings and table (>= 1).", lower_bound=1)
flags.DEFINE_integer("shard", 0, "This process trains the plan's trainings at places shard mod shards "
                     "(0 <= shard < shards).", lower_bound=0)
flags.DEFINE_integer("shards", 1, "Processes building the table side by side (>= 1), e.g. one per core "
                     "with --threads=1.", lower_bound=1)
flags.DEFINE_integer("threads", 0, "TensorFlow intra- and inter-op threads (0: TensorFlow's default).",
                     lower_bound=0)
FLAGS = flags.FLAGS


def config_from_flags() -> ground_truth_build.BuildConfig:
  schedule = ground_truth_build.Schedule(
      epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size,
      **dataclasses.asdict(optimizer_flags.optimizer_config_from_flags()),
      eval_batch_size=FLAGS.eval_batch_size)
  return ground_truth_build.BuildConfig(width=FLAGS.width, data=dataclasses.replace(data_flags.data_config(), deterministic=True),
                                  schedule=schedule, networks=FLAGS.networks,
                                  second_seed_every=FLAGS.second_seed_every,
                                  draw_seed=FLAGS.draw_seed).validate()


def main(argv):
  del argv
  config = config_from_flags()
  if FLAGS.shard >= FLAGS.shards:
    raise errors.UserError(f"--shard={FLAGS.shard} does not exist with --shards={FLAGS.shards}; "
                           "use 0 <= shard < shards.")
  if FLAGS.threads:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  train = ground_truth_build.train_alone(FLAGS.work_root)
  if FLAGS.latency:
    ground_truth_build.add_latencies(FLAGS.output, ground_truth_build.LatencySettings(
        batch=FLAGS.latency_batch), FLAGS.progress)
  elif FLAGS.add_archs:
    ground_truth_build.add_networks(FLAGS.output, config, FLAGS.add_archs, train, progress=FLAGS.progress)
  else:
    ground_truth_build.build(FLAGS.output, config, train, FLAGS.progress, FLAGS.limit,
                       shard=FLAGS.shard, shards=FLAGS.shards)
  truth = ground_truth.load(FLAGS.output)
  ceiling = ground_truth.noise_ceiling(truth)
  print(f"{len(truth.entries)} networks in {FLAGS.output}; noise ceiling over {ceiling['networks']} "
        f"networks with two seeds: Kendall {ceiling['kendall']:.3f} (top 10%: {ceiling['kendall_top']:.3f})")


def run():
  """The console script (`pip install .`): as `python -m pcnas_tf.ground_truth_main`."""
  if len(sys.argv) == 1 and os.path.exists(_DEFAULT_FLAGFILE):
    sys.argv.append(f"--flagfile={_DEFAULT_FLAGFILE}")
  app.run_main(main)


if __name__ == "__main__":
  run()
