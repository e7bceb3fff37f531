r"""From data to a served model: search, retrain the chosen network, test, export, time against the budget.

  make search                                    # the demo: flags/demo.cfg and flags/retrain_demo.cfg
  bazel run //pcnas_tf:pipeline                  # the same (a bare run reads both)
  python -m pcnas_tf.pipeline_main --flagfile=flags/demo.cfg --flagfile=flags/retrain_demo.cfg

Takes every flag of `search_main` plus the --retrain_* and export flags below. Writes the search to
--work_dir, the retrained model to <work_dir>/retrain, the exports to <work_dir>/export, further
retrained pool members (--retrain_pool_members) to <work_dir>/retrain_pool, the page of the whole run to
<work_dir>/report.html (rewritten after every stage), and ends with one JSON line (also in
<work_dir>/pipeline_result.json): test_top1, latency_ms (the exported LiteRT model), budget_ms,
within_budget, wall_s and the paths written. Run again, finished stages are reused.
"""

from pcnas_tf import console  # pylint: disable=g-bad-import-order

console.quiet_startup()  # before anything below imports TensorFlow

import json

from absl import flags

from pcnas_tf.cli import app
from pcnas_tf import pipeline
from pcnas_tf.cli import search_flags

_DEFAULTS = pipeline.Retraining()
flags.DEFINE_integer("retrain_epochs", _DEFAULTS.epochs, "Epochs of retraining the chosen network (>= 1).")
flags.DEFINE_integer("retrain_steps_per_epoch", _DEFAULTS.steps_per_epoch,
                     "Retraining steps per epoch; 0 for one pass over the training split (>= 0).")
flags.DEFINE_integer("retrain_batch_size", _DEFAULTS.batch_size, "Retraining batch size (>= 1).")
flags.DEFINE_float("retrain_learning_rate", _DEFAULTS.learning_rate, "Initial retraining learning rate (> 0).")
flags.DEFINE_float("retrain_final_learning_rate", _DEFAULTS.final_learning_rate,
                   "Retraining learning rate at the end (cosine decay) (> 0, at most --retrain_learning_rate).")
flags.DEFINE_float("retrain_weight_decay", _DEFAULTS.weight_decay, "Retraining L2 weight (0 <= value <= 1).")
flags.DEFINE_float("retrain_mixup", _DEFAULTS.mixup, "Retraining MixUp alpha (0: off) (>= 0).")
flags.DEFINE_float("retrain_label_smoothing", _DEFAULTS.label_smoothing, "Retraining label smoothing (0 <= value < 1).")
flags.DEFINE_boolean("retrain_se", _DEFAULTS.se, "Add squeeze-and-excitation when retraining (the "
                     "searched space has none, so the budget was met without it).")
flags.DEFINE_integer("retrain_pool_members", _DEFAULTS.pool_members,
                     "Retrain, test and time this many of the final pool's best (the chosen network "
                     "first; the others are exported to LiteRT only, to be timed) (1 to --pool_size).")
flags.DEFINE_integer("latency_runs", 40, "Timed runs of the exported LiteRT model, whose minimum counts "
                     "(>= 1).")
FLAGS = flags.FLAGS


def retraining_from_flags() -> pipeline.Retraining:
  return pipeline.Retraining(
      epochs=FLAGS.retrain_epochs, steps_per_epoch=FLAGS.retrain_steps_per_epoch,
      batch_size=FLAGS.retrain_batch_size, learning_rate=FLAGS.retrain_learning_rate,
      final_learning_rate=FLAGS.retrain_final_learning_rate, weight_decay=FLAGS.retrain_weight_decay,
      mixup=FLAGS.retrain_mixup, label_smoothing=FLAGS.retrain_label_smoothing, se=FLAGS.retrain_se,
      pool_members=FLAGS.retrain_pool_members)


def main(argv):
  del argv
  result = pipeline.run_pipeline(search_flags.config_from_flags(), FLAGS.work_dir,
                                 retraining_from_flags(), FLAGS.latency_runs, FLAGS.overwrite,
                                 FLAGS.progress)
  verdict = "within" if result["within_budget"] else "OVER"
  print(f"{result['arch']}: test top-1 {result['test_top1']:.4f}; exported LiteRT "
        f"{result['latency_ms']:.3f} ms at batch {result['latency_batch']} ({verdict} the budget of "
        f"{result['budget_ms']} ms; the table predicted {result['predicted_latency_ms']:.3f} ms)")
  print(json.dumps(result))


def run():
  """The console script (`pip install .`): as `python -m pcnas_tf.pipeline_main`."""
  search_flags.use_default_flagfile("demo.cfg", "retrain_demo.cfg")
  app.run_main(main)


if __name__ == "__main__":
  run()
