r"""Trains a chosen architecture from scratch and reports its test accuracy (paper section 4.1).

  bazel run //pcnas_tf:train                    # the demo: flags/train_demo.cfg, after `make search`
  python -m pcnas_tf.train_main --flagfile=flags/train_demo.cfg
  python -m pcnas_tf.train_main --flagfile=flags/train_imagenet.cfg --search_result=run/search_result.json
  python -m pcnas_tf.train_main --arch=01221020 --space=macro --width=0.25 --work_dir=runs/arch

The architecture comes from exactly one of --search_result (its chosen one, or --pool_rank=k of its final
pool; data and space settings default to the search's), --arch (with --space and --width) or
--arch_file. Writes to --work_dir: model.keras, train_result.json, config.json, tensorboard/,
checkpoints/. Started again in the same work directory, an unfinished training resumes.
"""

from pcnas_tf import console  # pylint: disable=g-bad-import-order

console.quiet_startup()  # before anything below imports TensorFlow

import dataclasses
import os
import sys

from absl import flags

from pcnas_tf.data import data_config
from pcnas_tf.cli import data_flags
from pcnas_tf.cli import optimizer_flags
from pcnas_tf.cli import app
from pcnas_tf import errors
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import standalone as train_lib
from pcnas_tf.training import from_search
from pcnas_tf.training import train_config
from pcnas_tf.distribute import strategy as strategy_lib

_DEFAULT_FLAGFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "flags", "train_demo.cfg")

flags.DEFINE_string("search_result", None, "A search's search_result.json to take the architecture from.")
flags.DEFINE_integer("pool_rank", None, "Train this member of the final pool (0: best) instead of the "
                     "chosen architecture (>= 0).")
flags.DEFINE_string("arch", None, "An architecture: a compact string (01221020) or comma-separated ops.")
flags.DEFINE_string("arch_file", None, "A JSON file with an architecture: a list of ops, or {\"arch\", "
                    "\"space\"?} such as a train_result.json.")
flags.DEFINE_string("space", "macro", "Search space of --arch: small, large, macro, or a JSON spec file.")
flags.DEFINE_float("width", 1.0, "Width multiplier of --space's channels (> 0).")
flags.DEFINE_string("work_dir", "runs/train", "Directory for checkpoints, the model and its results.")
flags.DEFINE_boolean("overwrite", False, "Discard an existing training in --work_dir and start afresh.")
flags.DEFINE_boolean("progress", True, "Show progress bars.")
flags.DEFINE_integer("epochs", 300, "Training epochs (>= 1).")
flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0 for one pass over the training split (>= 0).")
flags.DEFINE_integer("batch_size", 512, "Global batch size (>= 1).")
flags.DEFINE_integer("eval_batch_size", 256, "Global batch size of validation and test evaluation (>= 1).")
flags.DEFINE_float("mixup", 0.2, "MixUp alpha; 0 turns MixUp off (>= 0).")
flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the cross-entropy (0 <= value < 1).")
flags.DEFINE_boolean("se", True, "Squeeze-and-excitation at the end of each operator (--nose: off).")
flags.DEFINE_string("init_from_supergraph", "", "A search work directory: start from its supergraph's "
                    "weights for this architecture (needs --nose) instead of from scratch.")
flags.DEFINE_enum("strategy", "mirrored", ["mirrored", "one_device", "multi_worker"],
                  "tf.distribute strategy.")
flags.DEFINE_integer("collective_timeout_s", strategy_lib.COLLECTIVE_TIMEOUT_S,
                     "multi_worker: seconds a step waits for the other workers before the run stops "
                     "(restart every task to resume) (>= 1).", lower_bound=1)
FLAGS = flags.FLAGS


def _architecture():
  """(space, arch, search result or None, predicted costs) from the one architecture flag given."""
  given = [name for name in ("search_result", "arch", "arch_file") if FLAGS[name].value]
  if len(given) != 1:
    raise errors.UserError(f"Give exactly one of --search_result, --arch or --arch_file (given: "
                           f"{', '.join('--' + n for n in given) or 'none'}).")
  if FLAGS.search_result:
    if FLAGS["space"].present or FLAGS["width"].present:
      raise errors.UserError("--space and --width apply to --arch and --arch_file; a search result "
                             "brings its own space.")
    result = from_search.read_search_result(FLAGS.search_result)
    member = from_search.pool_member(result, FLAGS.search_result, FLAGS.pool_rank)
    space = space_lib.SearchSpace.from_json(result["space"])
    return (space, from_search.parse_arch(space, member["arch"]), result,
            from_search.search_predictions(member))
  if FLAGS.pool_rank is not None:
    raise errors.UserError("--pool_rank selects from a search's final pool; use it with --search_result.")
  space = space_lib.get_space(FLAGS.space, FLAGS.width)
  if FLAGS.arch:
    return space, space.parse_arch(FLAGS.arch), None, {}
  space, arch = from_search.read_arch_file(FLAGS.arch_file, space)
  return space, arch, None, {}


def _data_config(search_result):
  """The data settings: the search's where a flag is not set explicitly, else the flags'."""
  if search_result is None:
    return data_flags.data_config()
  searched = data_config.DataConfig(**search_result["config"]["data"])
  changes = {name: data_flags.value(name) for name in data_flags.NAMES if FLAGS[name].present}
  return dataclasses.replace(searched, **changes)


def config_from_flags() -> train_config.TrainConfig:
  space, arch, search_result, predicted = _architecture()
  data = _data_config(search_result)
  return train_config.TrainConfig(
      space=space, arch=arch, se=FLAGS.se, epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch,
      batch_size=FLAGS.batch_size, optimizer=optimizer_flags.optimizer_config_from_flags(),
      mixup=FLAGS.mixup, label_smoothing=FLAGS.label_smoothing,
      eval_batch_size=FLAGS.eval_batch_size, init_from_supergraph=FLAGS.init_from_supergraph,
      strategy=FLAGS.strategy, seed=data.seed, search_result=FLAGS.search_result or "",
      pool_rank=FLAGS.pool_rank, predicted=predicted, data=data)


def main(argv):
  del argv
  result = train_lib.run_training(config_from_flags(), FLAGS.work_dir, FLAGS.overwrite, FLAGS.progress,
                                  FLAGS.collective_timeout_s)
  print(f"Trained {result['arch_string']} ({', '.join(result['arch'])}) for {result['epochs']} epochs "
        f"in {result['wall_time_s']:.0f} s: test top-1 {result['top1']:.4f}, top-{train_lib.TOP_K} "
        f"{result['top5']:.4f} on {result['test_images']:,} images; {result['params']:,} params, "
        f"{result['flops']:,} FLOPs")
  print(f"Results in {os.path.join(FLAGS.work_dir, train_lib.RESULT_FILE)}, model in "
        f"{os.path.join(FLAGS.work_dir, train_lib.MODEL_FILE)}")


def run():
  """The console script (`pip install .`): as `python -m pcnas_tf.train_main`."""
  if len(sys.argv) == 1 and os.path.exists(_DEFAULT_FLAGFILE):
    sys.argv.append(f"--flagfile={_DEFAULT_FLAGFILE}")
  app.run_main(main)


if __name__ == "__main__":
  run()
