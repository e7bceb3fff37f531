"""The search's flags and the `SearchConfig` they describe, shared by the binaries that run searches.

`search_main`, `ablation_main` and `rank_check_main` all run searches from the same flags and flag files;
importing this module defines them once. Only binaries import it: library code never reads flags.
"""

import os
import sys

from absl import flags

from pcnas_tf.cli import data_flags
from pcnas_tf.cli import optimizer_flags
from pcnas_tf.searcher import search_config
from pcnas_tf.distribute import strategy as strategy_lib

flags.DEFINE_string("work_dir", "runs/demo", "Directory for checkpoints and results.")
flags.DEFINE_boolean("overwrite", False, "Discard an existing search in --work_dir and start afresh.")
flags.DEFINE_boolean("progress", True, "Show progress bars.")
flags.DEFINE_string("space", "macro", "Search space: small, large, macro, or a JSON spec file.")
flags.DEFINE_float("width", 1.0, "Width multiplier of the space's channels (> 0).")
flags.DEFINE_integer("pool_size", 5, "P: partial models kept in the pool (>= 1).")
flags.DEFINE_integer("num_samples", 900, "S: completions sampled to estimate each potential (>= 1).")
flags.DEFINE_integer("warmup_epochs", 100, "Tw: epochs of uniform single-path warm-up (>= 0).")
flags.DEFINE_integer("interval_epochs", 5, "Ti: epochs trained between pool updates (>= 0).")
flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0 for one pass over the training split (>= 0).")
flags.DEFINE_integer("batch_size", 512, "Global batch size of supergraph training (>= 1).")
flags.DEFINE_enum("constraint", "latency", ["latency", "flops", "params"], "The hard constraint.")
flags.DEFINE_string("budget", "0.5", "Budget: a fraction of the space's [min, max] cost (0.5, 50%) "
                    "or an absolute value (12ms, 45e6).")
flags.DEFINE_string("latency_backend", "tflite", "Latency backend: tflite, tf or tensorrt.")
flags.DEFINE_integer("latency_batch", 16, "Batch size of latency measurements (paper: 16) (>= 1).")
flags.DEFINE_string("latency_cache_dir", "~/.cache/pcnas_tf/latency",
                    "Where latency tables are cached, keyed by space, shape, backend and device.")
flags.DEFINE_integer("calibration_archs", 40, "Whole networks timed to calibrate a new latency table (>= 0).")
flags.DEFINE_enum("sampling", "exact", list(search_config.SAMPLING),
                  "exact: uniform among feasible completions; rejection: the paper's Algorithm 1.")
flags.DEFINE_enum("bn_mode", "batch", ["batch", "moving"],
                  "BN statistics during potential evaluation: the evaluation batch's, or moving averages.")
flags.DEFINE_integer("eval_batch_size", 256, "Images per validation mini-batch (>= 1).")
flags.DEFINE_integer("eval_batches", 8, "Fixed validation mini-batches shared by the completions (>= 1).")
flags.DEFINE_boolean("reuse_prefix", True, "Potential evaluation computes every shared (batch, path prefix) once and a repeated path once (exact); false: every completion from the images.")
flags.DEFINE_enum("training", "pcnas", list(search_config.TRAINING),
                  "pcnas: shrink the space per interval; oneshot: uniform training, no shrinking.")
flags.DEFINE_enum("search", "pcnas", list(search_config.SEARCHES),
                  "pcnas: the progressive pool; ea, random: the paper's baselines on the trained "
                  "supergraph, with as many evaluations as PC-NAS' potential evaluation.")
flags.DEFINE_enum("strategy", "mirrored", ["mirrored", "one_device", "multi_worker"],
                  "tf.distribute strategy: mirrored (this machine's GPUs), one_device, or multi_worker "
                  "(machines listed in the TF_CONFIG environment variable).")
flags.DEFINE_integer("collective_timeout_s", strategy_lib.COLLECTIVE_TIMEOUT_S,
                     "multi_worker: seconds a step waits for the other workers before the run stops "
                     "(restart every task to resume) (>= 1).", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", 200, "Checkpoint every N training steps (>= 1).")
FLAGS = flags.FLAGS
FLAGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "flags")


def use_default_flagfile(*names: str) -> None:
  """Reads flags/`names` first when the command line names no flag file (a bare `bazel run`)."""
  if any(arg.startswith("--flagfile") for arg in sys.argv[1:]):
    return
  paths = [os.path.join(FLAGS_DIR, name) for name in names]
  sys.argv[1:1] = [f"--flagfile={path}" for path in paths if os.path.exists(path)]


def config_from_flags() -> search_config.SearchConfig:
  """The `SearchConfig` of the parsed flags (not yet validated)."""
  data = data_flags.data_config()
  return search_config.SearchConfig(
      space=FLAGS.space, width=FLAGS.width, pool_size=FLAGS.pool_size, num_samples=FLAGS.num_samples,
      warmup_epochs=FLAGS.warmup_epochs, interval_epochs=FLAGS.interval_epochs,
      steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size,
      optimizer=optimizer_flags.optimizer_config_from_flags(), constraint=FLAGS.constraint,
      budget=FLAGS.budget, latency_backend=FLAGS.latency_backend, latency_batch=FLAGS.latency_batch,
      latency_cache_dir=FLAGS.latency_cache_dir, calibration_archs=FLAGS.calibration_archs,
      sampling=FLAGS.sampling, bn_mode=FLAGS.bn_mode, eval_batch_size=FLAGS.eval_batch_size,
      eval_batches=FLAGS.eval_batches, reuse_prefix=FLAGS.reuse_prefix, training=FLAGS.training,
      search=FLAGS.search,
      strategy=FLAGS.strategy, checkpoint_every=FLAGS.checkpoint_every, seed=FLAGS.seed, data=data)
