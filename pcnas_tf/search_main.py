r"""Runs a PC-NAS search.

  make search                                   # the demo: flags/demo.cfg
  bazel run //pcnas_tf:search                   # the same (a bare run reads flags/demo.cfg)
  python -m pcnas_tf.search_main --flagfile=flags/imagenet_small.cfg --data_dir=/data/tfds

Writes to --work_dir: search_result.json, report.html (rewritten after every interval), the pictures
search_front.png, search.png, chosen_arch.png and (latency constraint) latency_table.png, tensorboard/
(scalars, and an HParams session per scored candidate), checkpoints/. A search started again in the
same work directory resumes from its last checkpoint.

Several machines: run the same command on each with --strategy=multi_worker, a TF_CONFIG naming the
machines and this one's place, and a --work_dir on a file system they share (README, "From one GPU to
many machines").

With KERASTUNER_TUNER_ID=chief, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set (keras-tuner's
distributed mode), the search serves its potential evaluations to workers (`pcnas_tf.eval_worker_main`)
instead of scoring them itself; see README, "A pool of evaluation workers".
"""

from pcnas_tf import console  # pylint: disable=g-bad-import-order

console.quiet_startup()  # before anything below imports TensorFlow

import os

from absl import flags

from pcnas_tf.distribute import cluster
from pcnas_tf.cli import app
from pcnas_tf.searcher import remote_eval
from pcnas_tf.cli import search_flags
from pcnas_tf.searcher import loop as search_lib

flags.DEFINE_float("eval_lease_timeout", 600.0, "With evaluation workers: seconds a worker may hold a "
                   "trial unreported before it goes to another worker (> 0).", lower_bound=0.001)
flags.DEFINE_float("eval_stop_grace", 30.0, "With evaluation workers: seconds the finished search keeps "
                   "serving so that polling workers learn that it is over (>= 0).", lower_bound=0)
flags.DEFINE_integer("eval_trial_completions", None, "With evaluation workers: the most completions one "
                     "trial carries (>= 1); default: a trial per candidate (P x N per interval). Smaller "
                     "trials keep more workers busy; the potentials do not change.", lower_bound=1)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  serve = remote_eval.serve_settings_from_env(FLAGS.eval_lease_timeout, FLAGS.eval_stop_grace,
                                              FLAGS.eval_trial_completions)
  result = search_lib.run_search(search_flags.config_from_flags(), FLAGS.work_dir, FLAGS.overwrite,
                                 FLAGS.progress, FLAGS.collective_timeout_s, serve)
  if result["distribution"]["strategy"] == "multi_worker" and not cluster.task_from_env().is_chief:
    print(f"Search finished; the chief wrote the results to {FLAGS.work_dir}.")
    return
  chosen = result["chosen"]
  print(f"Chosen architecture: {chosen['arch_string']} ({', '.join(chosen['arch'])})")
  print(f"  potential {chosen['potential']:.4f}, "
        f"{result['constraint']['kind']} {chosen[result['constraint']['prediction_key']]:.4g} "
        f"{result['constraint']['unit']} (budget {result['constraint']['budget']:.4g}), "
        f"{chosen['params']:,} params, {chosen['flops']:,} FLOPs")
  print(f"Results in {os.path.join(FLAGS.work_dir, search_lib.RESULT_FILE)}")


def run():
  """The console script (`pip install .`): as `python -m pcnas_tf.search_main`."""
  search_flags.use_default_flagfile("demo.cfg")
  app.run_main(main)


if __name__ == "__main__":
  run()
