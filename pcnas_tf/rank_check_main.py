r"""Ranking correlation of a PC-NAS and a One-Shot supergraph with stand-alone accuracy (paper Fig. 2b).

  bazel run //pcnas_tf:rank_check                # a bare run reads flags/rank_cpu.cfg
  python -m pcnas_tf.rank_check_main --flagfile=flags/rank_cpu.cfg --num_archs=8 --archs=random
  python -m pcnas_tf.rank_check_main --pcnas_dir=runs/ablation/pcnas_pcnas \
      --oneshot_dir=runs/ablation/oneshot_ea --work_dir=runs/rank

Takes every search flag of //pcnas_tf:search for the two searches it runs (unless --pcnas_dir and
--oneshot_dir give finished ones) and for the stand-alone trainings. Writes to --work_dir:
rank_result.json, rank.png, standalone/<arch>/ and, when it searches, pcnas/ and oneshot/.
"""

from pcnas_tf import console  # pylint: disable=g-bad-import-order

console.quiet_startup()  # before anything below imports TensorFlow

import os

from absl import flags

from pcnas_tf.cli import app
from pcnas_tf.studies import rank_check as rank_lib
from pcnas_tf.cli import search_flags

flags.DEFINE_integer("num_archs", 8, "K: architectures to train alone and rank (>= 2).")
flags.DEFINE_string("archs", "pool", "pool: candidates of the PC-NAS search's final pool (the paper's "
                    "choice); random: uniform architectures within the budget.")
flags.DEFINE_integer("standalone_epochs", 2, "Epochs of each architecture's stand-alone training (>= 0).")
flags.DEFINE_string("pcnas_dir", "", "A finished PC-NAS search's work directory to reuse.")
flags.DEFINE_string("oneshot_dir", "", "A finished One-Shot search's work directory to reuse.")
flags.DEFINE_string("ground_truth", "", "A ground-truth table (JSON) built on the search's data and width: "
                    "stand-alone accuracies come from it, networks it lacks are trained with its schedule "
                    "and added; empty: train each for --standalone_epochs here.")

FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = rank_lib.RankConfig(search_flags.config_from_flags(), FLAGS.num_archs, FLAGS.archs,
                               FLAGS.standalone_epochs, FLAGS.pcnas_dir, FLAGS.oneshot_dir,
                               FLAGS.ground_truth)
  result = rank_lib.run_rank_check(config, FLAGS.work_dir, FLAGS.overwrite, FLAGS.progress)
  print(rank_lib.format_correlations(result))
  print(f"Results in {os.path.join(FLAGS.work_dir, rank_lib.RESULT_FILE)} and "
        f"{os.path.join(FLAGS.work_dir, rank_lib.PLOT_FILE)}")


def run():
  """The console script (`pip install .`): as `python -m pcnas_tf.rank_check_main`."""
  search_flags.use_default_flagfile("rank_cpu.cfg")
  app.run_main(main)


if __name__ == "__main__":
  run()
