"""Running a model and its exported artifacts on images, and measuring what they compute and how fast.

Every runner is a `Predict`, a function from a batch of normalised images to a batch of outputs (softmax
probabilities for a classifier): the Keras model through `probabilities_function` (the tf.function the
writers convert), a SavedModel, a TFLite model (LiteRT) and an ONNX model (onnxruntime).
`predict_in_batches`, `measure_latency` and `parity` give the figures an export is judged by.
"""

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from pcnas_tf import console
from pcnas_tf import files
from pcnas_tf.constraints import timing

Predict = Callable[[np.ndarray], np.ndarray]  # A batch of images -> a batch of outputs.


def probabilities_function(model: keras.Model) -> tf.types.experimental.GenericFunction:
  """A tf.function from normalised images [None, H, W, C] to {"probabilities": softmax}."""
  spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="images")

  @tf.function(input_signature=[spec])
  def probabilities(images):
    return {"probabilities": tf.nn.softmax(model(images, training=False), axis=-1)}

  return probabilities


def keras_predictor(model: keras.Model) -> Predict:
  function = probabilities_function(model)
  return lambda images: function(tf.constant(images))["probabilities"].numpy()


def saved_model_predictor(path: str, output: str = "probabilities") -> Predict:
  signature = tf.saved_model.load(path).signatures["serving_default"]
  return lambda images: signature(images=tf.constant(images))[output].numpy()


def tflite_predictor(path: str, num_threads: int = 1) -> Predict:
  """Runs a TFLite model with the LiteRT interpreter, resizing its batch to each input's."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  with console.native_stderr_held():  # LiteRT's "Created ... XNNPACK delegate" line
    interpreter = Interpreter(model_content=files.read_bytes(path), num_threads=num_threads)
    interpreter.allocate_tensors()
  input_index = interpreter.get_input_details()[0]["index"]
  output_index = interpreter.get_output_details()[0]["index"]

  def predict(images):
    if tuple(interpreter.get_input_details()[0]["shape"]) != images.shape:
      interpreter.resize_tensor_input(input_index, images.shape)
      interpreter.allocate_tensors()
    interpreter.set_tensor(input_index, np.asarray(images, np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(output_index).copy()

  return predict


def onnx_predictor(path: str, num_threads: int = 1) -> Predict:
  """Runs an ONNX model with onnxruntime on the CPU."""
  import onnxruntime  # pylint: disable=g-import-not-at-top
  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = options.inter_op_num_threads = num_threads
  session = onnxruntime.InferenceSession(files.read_bytes(path), options,
                                         providers=["CPUExecutionProvider"])
  return lambda images: session.run(["probabilities"], {"images": np.asarray(images, np.float32)})[0]


def predict_in_batches(predict: Predict, images: np.ndarray, batch: int) -> np.ndarray:
  """Runs `predict` over `images` in batches of exactly `batch` (the last one padded, then trimmed)."""
  outputs = []
  for start in range(0, len(images), batch):
    chunk = images[start:start + batch]
    padded = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)])
    outputs.append(predict(padded)[:len(chunk)])
  return np.concatenate(outputs)


def measure_latency(predict: Predict, images: np.ndarray, runs: int = 20, warmup: int = 3) -> dict:
  """Milliseconds per call of `predict(images)`: min and median of `runs`, after `warmup` calls."""
  timed = timing.time_calls(lambda: predict(images), warmup, runs)
  return {"batch": len(images), "runs": timed.runs, "min_ms": round(timed.min_ms, 3),
          "median_ms": round(timed.median_ms, 3), "spread_ms": round(timed.spread_ms, 3)}


def parity(reference: np.ndarray, outputs: np.ndarray) -> dict:
  """Max abs difference and top-1 agreement of `outputs` against the Keras model's probabilities."""
  return {"images": len(reference),
          "max_abs": float(np.max(np.abs(outputs.astype(np.float64) - reference))),
          "top1_agreement": float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))}
