"""Builds (or resumes, or reuses from a cache) a latency lookup table for a search space.

  .venv/bin/python -m pcnas_tf.build_latency_table_main --space=macro --backend=tflite \
      --resolution=32 --batch=1 --output=runs/latency/macro_tflite.json

With --cache_dir instead of --output the table is reused when one with the same metadata exists there.
"""

from pcnas_tf import console  # pylint: disable=g-bad-import-order

console.quiet_startup()  # before anything below imports TensorFlow

from absl import flags

from pcnas_tf.cli import app
from pcnas_tf import errors
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.constraints import backends
from pcnas_tf.constraints import constraint
from pcnas_tf.constraints import latency_table

_SPACE = flags.DEFINE_string("space", "macro", "small, large, macro or a .json space spec.")
_WIDTH = flags.DEFINE_float("width", 1.0, "Width multiplier of a built-in space (> 0).", lower_bound=1e-6)
_BACKEND = flags.DEFINE_enum("backend", "tflite", list(backends.BACKENDS), "Timing backend.")
_BATCH = flags.DEFINE_integer("batch", 1, "Batch size the networks are timed at (>= 1; paper: 16 on GPU).",
                              lower_bound=1)
_RESOLUTION = flags.DEFINE_integer("resolution", 32, "Input height and width (>= 1).", lower_bound=1)
_CHANNELS = flags.DEFINE_enum("channels", "3", ["1", "3"], "Input channels: 1 or 3.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 10, "Classifier outputs (>= 2).", lower_bound=2)
_THREADS = flags.DEFINE_integer("threads", 1, "LiteRT threads (tflite; >= 1).", lower_bound=1)
_XLA = flags.DEFINE_boolean("xla", False, "Compile with XLA (tf).")
_PRECISION = flags.DEFINE_enum("precision", "fp32", ["fp32", "fp16"], "TensorRT precision.")
_RUNS = flags.DEFINE_integer("runs", 60, "Interleaved timing rounds per model (>= 1).", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed runs before timing (>= 0).", lower_bound=0)
_ESTIMATOR = flags.DEFINE_enum("estimator", "ratio", list(backends.ESTIMATORS),
                               "Statistic the table keeps: ratio to a paired reference network "
                               "(repeatable on a busy machine), or the model's own min or median.")
_CALIBRATION_ARCHS = flags.DEFINE_integer("calibration_archs", 40,
                                          "Random whole networks the table is fitted to (>= 0; 0 "
                                          "leaves it uncalibrated).", lower_bound=0)
_SEED = flags.DEFINE_integer("seed", 0, "Picks the calibration networks.")
_OUTPUT = flags.DEFINE_string("output", None, "Table file to write (resumed if it exists).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Directory of cached tables (instead of --output).")


def main(argv):
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments {argv[1:]}; all options are --flags.")
  if (_OUTPUT.value is None) == (_CACHE_DIR.value is None):
    raise errors.UserError("Give exactly one of --output and --cache_dir.")
  space = space_lib.get_space(_SPACE.value, _WIDTH.value)
  config = backends.BackendConfig(_BACKEND.value, _THREADS.value, _XLA.value, _PRECISION.value,
                                 _WARMUP.value, _RUNS.value, _ESTIMATOR.value)
  config.validate()
  shape = dict(batch=_BATCH.value, resolution=_RESOLUTION.value, channels=int(_CHANNELS.value),
               num_classes=_NUM_CLASSES.value, calibration_archs=_CALIBRATION_ARCHS.value,
               seed=_SEED.value)
  if _CALIBRATION_ARCHS.value == 0:
    print(latency_table.UNCALIBRATED_NOTE, flush=True)
  if _OUTPUT.value:
    table = latency_table.build_table(space, config, output=_OUTPUT.value, **shape)
  else:
    table = latency_table.get_or_build_table(_CACHE_DIR.value, space, config, **shape)
  low, high = constraint.make_constraint("latency", space, table=table).range()
  fit = table.calibration
  print(f"{space.name} on {table.metadata['device']}: latency {low:.3f}..{high:.3f} ms "
        f"(calibrated: {fit.get('model', 'ridge')} model, scale {fit['scale']:.3f}, cross-validated "
        f"RMSE {fit['cv_rmse_ms']} ms over {fit['networks']} networks).")


def run():
  """The console script (`pip install .`): as `python -m pcnas_tf.build_latency_table_main`."""
  app.run_main(main)


if __name__ == "__main__":
  run()
