"""The package versions a result was produced with, written into every result file."""

import platform


def versions():
  # pylint: disable=g-import-not-at-top  (imported when a result is written, not with this module)
  import keras
  import keras_tuner
  import numpy as np
  import tensorflow as tf
  return {"python": platform.python_version(), "tensorflow": tf.__version__,
          "keras": keras.__version__, "keras_tuner": keras_tuner.__version__, "numpy": np.__version__}
