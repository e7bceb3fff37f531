r"""Runs the paper's Table 3 ablation: PC-NAS/PC-NAS, One-Shot/PC-NAS, One-Shot/EA, each trained alone.

  bazel run //pcnas_tf:ablation                  # a bare run reads flags/ablation_cpu.cfg
  python -m pcnas_tf.ablation_main --flagfile=flags/ablation_cpu.cfg --work_dir=runs/ablation

Takes every search flag of //pcnas_tf:search as the base config of the three rows (--training and
--search are set per row). Writes to --work_dir: one sub work directory per row (its search and, in
standalone/, the stand-alone training of its chosen architecture) and ablation_result.json. Runs resume.
"""

from pcnas_tf import console  # pylint: disable=g-bad-import-order

console.quiet_startup()  # before anything below imports TensorFlow

import os

from absl import flags

from pcnas_tf.studies import ablation as ablation_lib
from pcnas_tf.cli import app
from pcnas_tf.cli import search_flags

flags.DEFINE_integer("standalone_epochs", 0, "Epochs of each found architecture's stand-alone "
                     "training; 0: the supergraph's epochs (Tw + L * Ti), the same budget (>= 0).")

flags.DEFINE_string("ground_truth", "", "A ground-truth table (JSON) built on the search's data and width: "
                    "each row's top-1 comes from it, networks it lacks are trained with its schedule and "
                    "added; empty: train each here with the supergraph's budget.")

FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = ablation_lib.AblationConfig(search_flags.config_from_flags(), FLAGS.standalone_epochs,
                                       FLAGS.ground_truth)
  result = ablation_lib.run_ablation(config, FLAGS.work_dir, FLAGS.overwrite, FLAGS.progress)
  print(ablation_lib.format_table(result))
  print(f"Results in {os.path.join(FLAGS.work_dir, ablation_lib.RESULT_FILE)}")


def run():
  """The console script (`pip install .`): as `python -m pcnas_tf.ablation_main`."""
  search_flags.use_default_flagfile("ablation_cpu.cfg")
  app.run_main(main)


if __name__ == "__main__":
  run()
