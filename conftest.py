"""Test set-up shared by every test: fixed seeds, quiet TensorFlow."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # pylint: disable=g-import-not-at-top


@pytest.fixture(autouse=True)
def fixed_seeds():
  """Every test starts from the same Python, NumPy and TensorFlow seeds."""
  import random
  import numpy as np
  random.seed(0)
  np.random.seed(0)
  if "tensorflow" in __import__("sys").modules:
    import keras
    keras.utils.set_random_seed(0)
