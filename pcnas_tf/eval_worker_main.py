r"""An evaluation worker: scores the potentials of a search's candidates that its chief hands out.

  # On the chief (the search), then on each worker machine; --work_dir is shared by all of them.
  KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 \
      python -m pcnas_tf.search_main --flagfile=flags/imagenet_small.cfg --work_dir=/shared/run
  KERASTUNER_TUNER_ID=worker0 KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 \
      python -m pcnas_tf.eval_worker_main --work_dir=/shared/run

The worker reads the search's config.json and, per interval, the supergraph weights the chief wrote to
--work_dir/eval_weights; the data set must be readable here too (--data_dir if it is mounted elsewhere).
It exits with status 0 when the search is finished or when the chief stops answering for --rpc_timeout
seconds.
"""

from pcnas_tf import console  # pylint: disable=g-bad-import-order

console.quiet_startup()  # before anything below imports TensorFlow

import dataclasses

from absl import flags

from pcnas_tf.cli import app
from pcnas_tf.searcher import remote_eval

flags.DEFINE_string("work_dir", None, "The search's work directory, shared with the chief.")
flags.DEFINE_string("data_dir", None, "Where the search's data set is on this machine (default: the "
                    "search's --data_dir).")
flags.DEFINE_float("rpc_timeout", 60.0, "Seconds a call to the chief may take before the worker "
                   "takes it for gone and exits (> 0).", lower_bound=0.001)
flags.DEFINE_float("connect_timeout", 3600.0, "Seconds to wait for the chief's first answer (its "
                   "start, with data loading and latency tables, may take long) (> 0).", lower_bound=0.001)
flags.DEFINE_float("poll_interval", 1.0, "Seconds between asks while the chief trains (> 0).",
                   lower_bound=0.001)
flags.mark_flag_as_required("work_dir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  tuner_id = remote_eval.worker_id_from_env()

  def evaluator_factory():
    config = remote_eval.read_config(FLAGS.work_dir)
    if FLAGS.data_dir:
      config = dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=FLAGS.data_dir))
    return remote_eval.worker_evaluator(config)

  worker = remote_eval.Worker(FLAGS.work_dir, evaluator_factory, tuner_id, FLAGS.rpc_timeout,
                              FLAGS.connect_timeout, FLAGS.poll_interval)
  worker.run()


def run():
  """The console script (`pip install .`): as `python -m pcnas_tf.eval_worker_main`."""
  app.run_main(main)


if __name__ == "__main__":
  run()
