"""pcnas_tf: PC-NAS (Posterior Convergent NAS) with Keras 3 and TensorFlow.

  tuner = pcnas_tf.PCNASTuner(space="macro", constraint="flops", budget="0.5", directory="runs")
  tuner.search(x_train, y_train, validation_split=0.1)

`PCNASTuner`, `SearchSpace` and `LayerSpec` are imported on first use, so that `import pcnas_tf.errors`
(and the binaries' flag parsing) stays light.
"""

import os

# The project runs Keras on TensorFlow; set before any `import keras`.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["PCNASTuner", "SearchSpace", "LayerSpec"]


def __getattr__(name):
  if name == "PCNASTuner":
    from pcnas_tf import console  # pylint: disable=g-import-not-at-top
    console.quiet_library()  # TensorFlow's start-up lines would fill a notebook's first cell
    from pcnas_tf.searcher import tuner  # pylint: disable=g-import-not-at-top
    return tuner.PCNASTuner
  if name in ("SearchSpace", "LayerSpec"):
    from pcnas_tf.space import search_space  # pylint: disable=g-import-not-at-top
    return getattr(search_space, name)
  raise AttributeError(f"module 'pcnas_tf' has no attribute {name!r}")
