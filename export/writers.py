"""The format writers: a trained classifier as a SavedModel, TFLite (float32 or int8), ONNX, a backbone,
and TensorRT (thin wrappers over `pcnas_tf.constraints.tensorrt`).

Each writer converts `predictors.probabilities_function`, so every artifact takes float32 images
[batch, H, W, C] normalised as in training and returns softmax probabilities; it replaces only its own
earlier output at its path. The TensorRT writers also return a `Predict` that runs what they built.
"""

import warnings
from typing import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from export import export_errors
from export import predictors
from export import spec as spec_lib
from pcnas_tf import files
from pcnas_tf.constraints import tensorrt

ONNX_OPSET = tensorrt.ONNX_OPSET


def _fresh(path: str) -> str:
  """Removes an earlier export at `path` (only this export's own files are ever replaced)."""
  files.remove(path)
  return path


def decode_images(image_bytes, input_shape) -> tf.Tensor:
  """JPEG/PNG strings [N] -> images of `input_shape`, normalised as in training (pixel / 127.5 - 1)."""
  height, width, channels = input_shape

  def decode(encoded):
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), (height, width), antialias=True)
    return tf.ensure_shape(image, input_shape)

  images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.float32)
  return images / 127.5 - 1.0


def export_saved_model(model: keras.Model, path: str, top_k: int = 5) -> None:
  """Writes a serving SavedModel.

  Signatures:
    serving_default: `images` float32 [None, H, W, C] (normalised) -> `probabilities` [None, classes],
      `classes` int32 [None, k] (top-k class ids, best first).
    encoded_images: `image_bytes` string [None] (JPEG or PNG) -> the same outputs.
  """
  shape = tuple(model.input_shape[1:])
  k = min(top_k, model.output_shape[-1])
  probabilities = predictors.probabilities_function(model)

  def outputs(images):
    probs = probabilities(images)["probabilities"]
    return {"probabilities": probs, "classes": tf.math.top_k(probs, k).indices}

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint("serving_default", lambda images: outputs(images),
                       input_signature=[tf.TensorSpec((None,) + shape, tf.float32, name="images")])
  archive.add_endpoint("encoded_images", lambda image_bytes: outputs(decode_images(image_bytes, shape)),
                       input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
  archive.write_out(_fresh(path), verbose=False)


def _as_representative(representative) -> Callable[[], Iterable[list[np.ndarray]]]:
  """TFLite's representative dataset from images [N, H, W, C], or a callable already in its form."""
  if callable(representative):
    return representative
  images = np.asarray(representative, np.float32)
  return lambda: ([image[None]] for image in images)


def export_tflite(model: keras.Model, path: str, representative=None) -> None:
  """Writes a TFLite model of the probabilities; int8 when a representative dataset is given.

  Args:
    representative: None for float32; else normalised images [N, H, W, C] from the training split, or
      TFLite's own form (a callable yielding `[batch]` lists), to calibrate full-integer quantisation.
      The int8 model keeps float32 input and output tensors, so callers feed it exactly what they feed
      the float one.
  """
  function = predictors.probabilities_function(model)
  # Converted without the SavedModel detour (as `backends.to_tflite`): the weights are frozen into
  # constants, so no READ_VARIABLE op remains for int8 calibration to trip on, and passing the model as
  # the trackable object keeps the converter off its deprecated path.
  converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], model)
  converter.experimental_lower_to_saved_model = False
  if representative is not None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _as_representative(representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  with warnings.catch_warnings():
    # TensorFlow's own calibrate-then-quantize flow first converts with an int8 inference type and no
    # input statistics, and warns about it (convert.py: "we should ideally raise an error here, but we
    # don't"); the calibration then supplies them. It asks nothing of the user.
    warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
    content = converter.convert()
  files.write_bytes(_fresh(path), content)


def export_onnx(model: keras.Model, path: str) -> None:
  """Writes an ONNX model (input `images`, output `probabilities`) via tf2onnx.

  Converted from a tf.function of the model: `tf2onnx.convert.from_keras` expects Keras 2 models.
  """
  import tf2onnx  # pylint: disable=g-import-not-at-top  (slow to import; only this format needs it)
  function = predictors.probabilities_function(model)
  with files.written_locally(_fresh(path)) as local:  # tf2onnx writes with `open`: local paths only
    tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=ONNX_OPSET,
                                  output_path=local)


def stage_ends(space) -> list[int]:
  """Indices of the mixops that end a stage: the last one before each stride-2 mixop, and the last."""
  ends = [index - 1 for index in range(1, space.num_layers) if space.layers[index].stride == 2]
  return ends + [space.num_layers - 1]


def backbone_model(model: keras.Model, spec: spec_lib.ModelSpec) -> keras.Model:
  """The same network, returning the feature map at each stage end as `stride_<s>` (s: total stride)."""
  outputs, stride = {}, spec.space.stem_stride
  ends = set(stage_ends(spec.space))
  for index, layer in enumerate(spec.space.layers):
    stride *= layer.stride
    if index in ends:
      name = f"stride_{stride}"
      outputs[name] = model.get_layer(spec_lib.mixop_layers(model)[index].name).output
  return keras.Model(model.input, outputs, name=f"{model.name}_backbone")


def export_backbone(model: keras.Model, spec: spec_lib.ModelSpec, keras_path: str, saved_model_path: str):
  """Writes the backbone as a `.keras` model and a SavedModel (serving_default: images -> features).

  Returns:
    The backbone Keras model.
  """
  backbone = backbone_model(model, spec)
  with files.written_locally(_fresh(keras_path)) as local:
    backbone.save(local)
  archive = keras.export.ExportArchive()
  archive.track(backbone)
  archive.add_endpoint("serving_default", lambda images: backbone(images, training=False),
                       input_signature=[tf.TensorSpec((None,) + spec.input_shape, tf.float32,
                                                      name="images")])
  archive.write_out(_fresh(saved_model_path), verbose=False)
  return backbone


# TensorRT (needs an NVIDIA GPU) ---------------------------------------------------------------------


def tensorrt_route() -> str:
  """`tf_trt` where TensorFlow links TensorRT, else `tensorrt` (engines from ONNX).

  Raises:
    ExportError: on a machine without an NVIDIA GPU, or without any TensorRT.
  """
  reason = tensorrt.unavailable_reason()
  if reason is not None:
    raise export_errors.ExportError(f"TensorRT export needs {reason}.")
  return "tf_trt" if tensorrt.route() == "tf_trt" else "tensorrt"


def export_tf_trt(saved_model_path: str, path: str, precision: str,
                  sample: np.ndarray) -> predictors.Predict:
  """Converts the serving SavedModel with TF-TRT, builds engines for `sample`'s shape, and saves it."""
  converter, _ = tensorrt.tf_trt_convert(saved_model_path, precision, sample)
  converter.save(_fresh(path))
  return predictors.saved_model_predictor(path)


def export_tensorrt_engine(onnx_path: str, path: str, precision: str, batch: int) -> predictors.Predict:
  """Builds a serialized TensorRT engine (`.plan`) from the ONNX file, for batches of 1..`batch`."""
  logger = tensorrt.logger()
  onnx_bytes = files.read_bytes(onnx_path)
  try:
    engine = tensorrt.build_engine(onnx_bytes, precision, logger, batch_range=(1, batch))
  except RuntimeError as error:
    raise export_errors.ExportError(
        f"TensorRT could not build a {precision} engine from {onnx_path!r}: {error}") from error
  files.write_bytes(_fresh(path), engine)
  return tensorrt.Engine(engine, logger)
