"""pcnas_tf: PC-NAS (Posterior Convergent NAS) with Keras 3 and TensorFlow."""

import os

# The project runs Keras on TensorFlow; set before any `import keras`.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
