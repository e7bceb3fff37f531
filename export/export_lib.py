"""Export of a trained PC-NAS model: SavedModel, TFLite (float32, int8), ONNX, TensorRT and a backbone.

Every export is checked against the Keras model on the same images and timed on this machine; the figures
go to `export_result.json` in the output directory, next to the latency the search predicted. A parity
failure raises `ParityError` (after the figures are written), so a broken artifact never passes silently.

Input contract of every artifact: float32 images of the training shape [batch, H, W, C], normalised as in
training (`pcnas_tf.data`: pixel / 127.5 - 1, so [-1, 1]). The SavedModel adds an `encoded_images`
signature that takes JPEG/PNG bytes and does that normalisation itself. Classifier outputs are softmax
probabilities (the Keras model returns logits).

Usage:

  model = export_lib.load_model("run/model.keras")
  spec = export_lib.resolve_spec(model, export_lib.find_spec_file("run/model.keras"))
  config = export_lib.ExportConfig(output_dir="run/export", formats=("saved_model", "tflite"))
  result = export_lib.run_export(model, spec, config, parity_images, representative_images)
"""

import dataclasses
import os
import warnings
import zipfile
from typing import Callable, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from pcnas_tf import files
from pcnas_tf import console
from pcnas_tf.data import data_config
from pcnas_tf.data import sources as data_sources
from pcnas_tf.data import batches as batches_lib
from pcnas_tf import errors
from pcnas_tf.nn import ops  # pylint: disable=unused-import  (registers the layers for deserialisation)
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.constraints import tensorrt
from pcnas_tf.constraints import timing

FORMATS = ("saved_model", "tflite", "tflite_int8", "onnx", "tensorrt", "backbone")
DEFAULT_FORMATS = ("saved_model", "tflite", "tflite_int8", "onnx", "backbone")
TENSORRT_PRECISIONS = ("fp32", "fp16")
SPEC_FILES = ("train_result.json", "search_result.json")  # Looked up next to the model, in this order.
RESULT_FILE = "export_result.json"
ONNX_OPSET = tensorrt.ONNX_OPSET
_LAYER_PREFIX = "layer_"

Predict = Callable[[np.ndarray], np.ndarray]  # A batch of images -> a batch of outputs.


class ExportError(errors.UserError):
  """An export cannot be made: bad flags, files, model or machine."""


class ParityError(ExportError):
  """An exported artifact computes something different from the Keras model."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What a model is: its space, architecture, shapes, and the search's predicted latency (if known)."""
  space: space_lib.SearchSpace
  arch: space_lib.Architecture
  input_shape: tuple[int, int, int]
  num_classes: int
  predicted_latency_ms: float | None = None


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What to export, where, and how strictly to check it.

  Attributes:
    output_dir: created; must not exist unless `overwrite` (then only this export's files are replaced).
    formats: a subset of `FORMATS`.
    batch: the batch size latency is measured at (the paper's 16), and parity is run in.
    latency_runs, warmup_runs: timed runs (min and median reported) after untimed warm-up runs.
    float_tolerance: max abs difference in probabilities allowed for float32 formats.
    min_top1_agreement: fraction of images whose top class must match, for int8 and fp16 formats.
    top_k: class ids returned by the SavedModel's `classes` output.
  """
  output_dir: str
  formats: tuple[str, ...] = DEFAULT_FORMATS
  overwrite: bool = False
  batch: int = 16
  latency_runs: int = 20
  warmup_runs: int = 3
  float_tolerance: float = 1e-4
  min_top1_agreement: float = 0.98
  top_k: int = 5

  def __post_init__(self):
    unknown = [name for name in self.formats if name not in FORMATS]
    if unknown or not self.formats:
      raise ExportError(f"Unknown export format {', '.join(unknown) or '(none given)'}; "
                        f"allowed: {', '.join(FORMATS)}.")
    if self.batch < 1 or self.latency_runs < 1 or self.warmup_runs < 0:
      raise ExportError(f"Batch {self.batch} and latency runs {self.latency_runs} must be >= 1, "
                        f"warm-up runs {self.warmup_runs} >= 0.")


def parse_formats(text: str) -> tuple[str, ...]:
  """Parses a comma-separated format list such as `saved_model,tflite`; raises on an unknown name."""
  formats = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
  unknown = [name for name in formats if name not in FORMATS]
  if unknown or not formats:
    raise ExportError(f"Unknown export format {', '.join(unknown) or '(none given)'}; "
                      f"allowed: {', '.join(FORMATS)}.")
  return formats


# Model and spec -------------------------------------------------------------------------------------


def load_model(path: str) -> keras.Model:
  """Loads a PC-NAS classifier written by `pcnas_tf.model.build_model(...).save(path)`.

  Raises:
    ExportError: if the file is missing, not a `.keras` archive, or not a PC-NAS classifier.
  """
  model = load_keras_archive(path)
  if not _is_pcnas(model):
    raise ExportError(f"Model file {path!r} is not a PC-NAS model: it needs layers 'stem', "
                      f"'layer_XX_<op>' and 'head' (as built by pcnas_tf.model.build_model).")
  return model


def load_keras_archive(path: str) -> keras.Model:
  """Loads a `.keras` model of PC-NAS layers (a classifier, or a backbone written by this module).

  `keras.models.load_model` cannot restore these: the operator layers have no `build()`, so Keras 3
  marks their sub-layers built without variables and then fails to load the weights. Rebuilding from the
  config, running one batch to create every variable, then loading the weights gives the same model.
  """
  if not os.path.isfile(path):
    raise ExportError(f"Model file {path!r} does not exist.")
  with warnings.catch_warnings():
    # Keras warns of the sub-layers it leaves unbuilt (built below), and of optimizer slots it skips.
    warnings.simplefilter("ignore", UserWarning)
    model = _model_from_archive(path)
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
      raise ExportError(f"Model file {path!r} is not a PC-NAS model: it needs one image input.")
    model(np.zeros((1,) + tuple(model.input_shape[1:]), np.float32))
    model.load_weights(path)
  return model


def _model_from_archive(path: str):
  try:
    with zipfile.ZipFile(path) as archive:
      config = archive.read("config.json").decode()
    return keras.models.model_from_json(config)
  except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as error:
    raise ExportError(f"Model file {path!r} is not a Keras .keras archive of a PC-NAS model "
                      f"({type(error).__name__}).") from error


def _is_pcnas(model: keras.Model) -> bool:
  names = {layer.name for layer in model.layers}
  return {"stem", "head"} <= names and bool(_mixop_layers(model))


def _mixop_layers(model: keras.Model) -> list[keras.layers.Layer]:
  """The model's searchable layers, `layer_XX_<op>`, in order."""
  return sorted((layer for layer in model.layers
                 if layer.name.startswith(_LAYER_PREFIX) and isinstance(layer, ops.Operator)),
                key=lambda layer: layer.name)


def model_arch(model: keras.Model) -> space_lib.Architecture:
  """The architecture a model was built for, read from its layers."""
  return tuple(layer.op_name for layer in _mixop_layers(model))


def find_spec_file(model_path: str) -> str | None:
  """The `train_result.json` or `search_result.json` next to the model, or None."""
  folder = os.path.dirname(os.path.abspath(model_path))
  for name in SPEC_FILES:
    if os.path.isfile(os.path.join(folder, name)):
      return os.path.join(folder, name)
  return None


def read_spec_file(path: str) -> dict:
  """Reads a training or search result as a dict; raises ExportError if unreadable."""
  content = files.read_json(path, "result file", ExportError)
  if not isinstance(content, dict):
    raise ExportError(f"Result file {path!r} holds a {type(content).__name__}, not a JSON object.")
  return content


def resolve_spec(model: keras.Model, spec_file: str | None = None, space=None,
                 arch: str | Sequence[str] | None = None) -> ModelSpec:
  """Works out what `model` is, and checks that every source agrees with its layers.

  Args:
    model: from `load_model`.
    spec_file: a `train_result.json` ({"space", "arch", "input_shape", "num_classes",
      "predicted_latency_ms"?}) or `search_result.json` ({"space"?, "final_pool": [entry, ...]}, an
      entry an arch or {"arch", "predicted_latency_ms"?}); None for none.
    space: a `SearchSpace` (overrides the file's); needed when no file gives one.
    arch: the architecture the user expects (compact string or op names); None to take the model's.

  Raises:
    ExportError, SpaceError: if no space is known, the model's architecture is not in the space or not
      in the search's final pool, its channels or strides differ from the space, or `arch` differs.
  """
  content = read_spec_file(spec_file) if spec_file else {}
  space = space or _space_from(content, spec_file)
  found = model_arch(model)
  if len(found) != space.num_layers:
    raise ExportError(f"Model {model.name!r} has {len(found)} searchable layers; space {space.name!r} "
                      f"has {space.num_layers}: the model was not built in this space.")
  found = space.validate_arch(found)
  _check_layers(model, space)
  expected = [("--arch", arch), (spec_file, content.get("arch"))]
  for source, text in expected:
    if text is not None and _as_arch(space, text) != found:
      raise ExportError(f"Architecture {space.arch_to_string(_as_arch(space, text))} from {source} "
                        f"does not match the model's layers, {space.arch_to_string(found)}.")
  _check_shapes(model, content, spec_file)
  latency = content.get("predicted_latency_ms")
  if "final_pool" in content or spec_file and os.path.basename(spec_file) == "search_result.json":
    latency = _pool_latency(content, space, found, spec_file)
  return ModelSpec(space, found, tuple(model.input_shape[1:]), model.get_layer("head").num_classes,
                   None if latency is None else float(latency))


def _space_from(content: dict, spec_file: str | None) -> space_lib.SearchSpace:
  if "space" not in content:
    raise ExportError(f"No search space is known for this model: pass --space and --width, or put a "
                      f"train_result.json with a 'space' next to it ({spec_file or 'none found'}).")
  return space_lib.SearchSpace.from_json(content["space"])


def _as_arch(space, value) -> space_lib.Architecture:
  return space.parse_arch(value) if isinstance(value, str) else space.validate_arch(value)


def _check_layers(model: keras.Model, space) -> None:
  """Channels and strides of each layer must be the space's: else the width or space is wrong."""
  for index, (layer, spec) in enumerate(zip(_mixop_layers(model), space.layers)):
    if (layer.out_channels, layer.stride) != (spec.channels, spec.stride):
      raise ExportError(
          f"Layer {layer.name!r} has {layer.out_channels} channels and stride {layer.stride}; space "
          f"{space.name!r} (width {space.width}) has {spec.channels} and {spec.stride} at layer "
          f"{index}: the model does not match this space or width.")


def _check_shapes(model: keras.Model, content: dict, spec_file) -> None:
  """A training result's input shape and classes must be the model's."""
  found = {"input_shape": list(model.input_shape[1:]),
           "num_classes": model.get_layer("head").num_classes}
  for key, value in found.items():
    if key in content and list(np.atleast_1d(content[key])) != list(np.atleast_1d(value)):
      raise ExportError(f"{spec_file!r} gives {key} {content[key]}; the model has {value}: the "
                        f"checkpoint does not match this result file.")


def _pool_latency(content: dict, space, arch, spec_file) -> float | None:
  """The predicted latency of `arch` in the search's final pool; raises if it is not there."""
  pool = content.get("final_pool")
  if not isinstance(pool, list) or not pool:
    raise ExportError(f"Search result {spec_file!r} has no final pool ('final_pool': a non-empty list "
                      f"of architectures); export a finished search.")
  for entry in pool:
    member = entry.get("arch") if isinstance(entry, dict) else entry
    if _as_arch(space, member) == arch:
      return entry.get("predicted_latency_ms") if isinstance(entry, dict) else None
  raise ExportError(f"The model's architecture {space.arch_to_string(arch)} is not in the final pool "
                    f"of {spec_file!r}.")


# Output directory -----------------------------------------------------------------------------------


def check_output_dir(path: str, overwrite: bool) -> None:
  """Raises if `path` exists without `overwrite`, is a file, or cannot be written or created."""
  if os.path.exists(path) and not overwrite:
    raise ExportError(f"Output directory {path!r} already exists; pass --overwrite to replace its "
                      f"exports.")
  if os.path.exists(path) and not os.path.isdir(path):
    raise ExportError(f"Output path {path!r} exists and is not a directory.")
  try:
    files.check_writable_dir(path, "Output directory", "--output_dir")
  except errors.UserError as error:
    raise ExportError(str(error)) from error


def prepare_output_dir(path: str, overwrite: bool) -> None:
  """Creates the output directory; an existing one is an error unless `overwrite`."""
  check_output_dir(path, overwrite)
  os.makedirs(path, exist_ok=True)


def _fresh(path: str) -> str:
  """Removes an earlier export at `path` (only this export's own files are ever replaced)."""
  files.remove(path)
  return path


# Exports --------------------------------------------------------------------------------------------


def probabilities_function(model: keras.Model) -> tf.types.experimental.GenericFunction:
  """A tf.function from normalised images [None, H, W, C] to {"probabilities": softmax}."""
  spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="images")

  @tf.function(input_signature=[spec])
  def probabilities(images):
    return {"probabilities": tf.nn.softmax(model(images, training=False), axis=-1)}

  return probabilities


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
  probabilities = probabilities_function(model)

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
      TFLite's own form (a callable yielding `[batch]` lists), to calibrate full-integer quantisation. The int8 model keeps
      float32 input and output tensors, so callers feed it exactly what they feed the float one.
  """
  function = probabilities_function(model)
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
  with open(_fresh(path), "wb") as f:
    f.write(content)


def export_onnx(model: keras.Model, path: str) -> None:
  """Writes an ONNX model (input `images`, output `probabilities`) via tf2onnx.

  Converted from a tf.function of the model: `tf2onnx.convert.from_keras` expects Keras 2 models.
  """
  import tf2onnx  # pylint: disable=g-import-not-at-top  (slow to import; only this format needs it)
  function = probabilities_function(model)
  tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=ONNX_OPSET,
                                output_path=_fresh(path))


def stage_ends(space) -> list[int]:
  """Indices of the mixops that end a stage: the last one before each stride-2 mixop, and the last."""
  ends = [index - 1 for index in range(1, space.num_layers) if space.layers[index].stride == 2]
  return ends + [space.num_layers - 1]


def backbone_model(model: keras.Model, spec: ModelSpec) -> keras.Model:
  """The same network, returning the feature map at each stage end as `stride_<s>` (s: total stride)."""
  outputs, stride = {}, spec.space.stem_stride
  ends = set(stage_ends(spec.space))
  for index, layer in enumerate(spec.space.layers):
    stride *= layer.stride
    if index in ends:
      name = f"stride_{stride}"
      outputs[name] = model.get_layer(_mixop_layers(model)[index].name).output
  return keras.Model(model.input, outputs, name=f"{model.name}_backbone")


def export_backbone(model: keras.Model, spec: ModelSpec, keras_path: str, saved_model_path: str):
  """Writes the backbone as a `.keras` model and a SavedModel (serving_default: images -> features).

  Returns:
    The backbone Keras model.
  """
  backbone = backbone_model(model, spec)
  backbone.save(_fresh(keras_path))
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
    raise ExportError(f"TensorRT export needs {reason}.")
  return "tf_trt" if tensorrt.route() == "tf_trt" else "tensorrt"


def export_tf_trt(saved_model_path: str, path: str, precision: str, sample: np.ndarray) -> Predict:
  """Converts the serving SavedModel with TF-TRT, builds engines for `sample`'s shape, and saves it."""
  converter, _ = tensorrt.tf_trt_convert(saved_model_path, precision, sample)
  converter.save(_fresh(path))
  return saved_model_predictor(path)


def export_tensorrt_engine(onnx_path: str, path: str, precision: str, batch: int) -> Predict:
  """Builds a serialized TensorRT engine (`.plan`) from the ONNX file, for batches of 1..`batch`."""
  logger = tensorrt.logger()
  with open(onnx_path, "rb") as f:
    onnx_bytes = f.read()
  try:
    engine = tensorrt.build_engine(onnx_bytes, precision, logger, batch_range=(1, batch))
  except RuntimeError as error:
    raise ExportError(f"TensorRT could not build a {precision} engine from {onnx_path!r}: {error}") from error
  with open(_fresh(path), "wb") as f:
    f.write(engine)
  return tensorrt.Engine(engine, logger)


# Running the artifacts ------------------------------------------------------------------------------


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
    interpreter = Interpreter(model_path=path, num_threads=num_threads)
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
  session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
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


def parity_failure(name: str, figures: dict, config: ExportConfig, quantised: bool) -> str | None:
  """Why `name` fails parity, or None: float formats by max abs, quantised ones by top-1 agreement."""
  if quantised and figures["top1_agreement"] < config.min_top1_agreement:
    return (f"{name}: top-1 agreement {figures['top1_agreement']:.4f} < "
            f"{config.min_top1_agreement} on {figures['images']} images")
  if not quantised and figures["max_abs"] > config.float_tolerance:
    return (f"{name}: max abs difference {figures['max_abs']:.3g} > {config.float_tolerance} on "
            f"{figures['images']} images")
  return None


# The whole export -----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Run:
  """What one export call shares between formats."""
  model: keras.Model
  spec: ModelSpec
  config: ExportConfig
  images: np.ndarray
  representative: object
  reference: np.ndarray
  results: dict

  def path(self, name: str) -> str:
    return os.path.join(self.config.output_dir, name)

  def timing_batch(self) -> np.ndarray:
    return self.images[:self.config.batch] if len(self.images) >= self.config.batch else np.resize(
        self.images, (self.config.batch,) + self.images.shape[1:])

  def record(self, name: str, path: str, predict: Predict, quantised: bool = False) -> None:
    """Checks parity of one artifact, times it, and records both."""
    figures = parity(self.reference, predict_in_batches(predict, self.images, self.config.batch))
    failure = parity_failure(name, figures, self.config, quantised)
    self.results[name] = {
        "path": os.path.relpath(path, self.config.output_dir), "parity": figures,
        "parity_ok": failure is None, "parity_failure": failure,
        "latency": measure_latency(predict, self.timing_batch(), self.config.latency_runs,
                                   self.config.warmup_runs),
        "predicted_latency_ms": self.spec.predicted_latency_ms}


def _export_saved_model(run: _Run) -> None:
  path = run.path("saved_model")
  export_saved_model(run.model, path, run.config.top_k)
  run.record("saved_model", path, saved_model_predictor(path))


def _export_tflite(run: _Run) -> None:
  path = run.path("model.tflite")
  export_tflite(run.model, path)
  run.record("tflite", path, tflite_predictor(path))


def _export_tflite_int8(run: _Run) -> None:
  path = run.path("model_int8.tflite")
  export_tflite(run.model, path, run.representative)
  run.record("tflite_int8", path, tflite_predictor(path), quantised=True)


def _export_onnx(run: _Run) -> None:
  path = run.path("model.onnx")
  export_onnx(run.model, path)
  run.record("onnx", path, onnx_predictor(path))


def _export_tensorrt(run: _Run) -> None:
  """One TensorRT export per precision; fp16 is judged like int8, by top-1 agreement."""
  route = tensorrt_route()
  for precision in TENSORRT_PRECISIONS:
    if route == "tf_trt":
      if not os.path.isdir(run.path("saved_model")):
        export_saved_model(run.model, run.path("saved_model"), run.config.top_k)
      path = run.path(f"tensorrt_{precision}")
      predict = export_tf_trt(run.path("saved_model"), path, precision, run.timing_batch())
    else:
      if not os.path.isfile(run.path("model.onnx")):
        export_onnx(run.model, run.path("model.onnx"))
      path = run.path(f"model_{precision}.plan")
      predict = export_tensorrt_engine(run.path("model.onnx"), path, precision, run.config.batch)
    run.record(f"tensorrt_{precision}", path, predict, quantised=precision == "fp16")
    run.results[f"tensorrt_{precision}"]["route"] = route


def _export_backbone(run: _Run) -> None:
  """The backbone's SavedModel is checked against the Keras backbone's features, not probabilities."""
  keras_path, saved_path = run.path("backbone.keras"), run.path("backbone_saved_model")
  backbone = export_backbone(run.model, run.spec, keras_path, saved_path)
  batch = run.timing_batch()
  expected, loaded = backbone(batch, training=False), tf.saved_model.load(saved_path)
  served = loaded.signatures["serving_default"](images=tf.constant(batch))
  max_abs = max(float(np.max(np.abs(served[name].numpy() - expected[name].numpy())))
                for name in expected)
  failure = (None if max_abs <= run.config.float_tolerance else
             f"backbone: max abs feature difference {max_abs:.3g} > {run.config.float_tolerance}")
  predict = lambda images: loaded.signatures["serving_default"](images=tf.constant(images))
  run.results["backbone"] = {
      "path": os.path.relpath(saved_path, run.config.output_dir),
      "keras_path": os.path.relpath(keras_path, run.config.output_dir),
      "outputs": {name: list(value.shape[1:]) for name, value in expected.items()},
      "parity": {"images": len(batch), "max_abs": max_abs}, "parity_ok": failure is None,
      "parity_failure": failure,
      "latency": measure_latency(predict, batch, run.config.latency_runs, run.config.warmup_runs),
      "predicted_latency_ms": run.spec.predicted_latency_ms}


_EXPORTERS = {"saved_model": _export_saved_model, "tflite": _export_tflite,
              "tflite_int8": _export_tflite_int8, "onnx": _export_onnx, "tensorrt": _export_tensorrt,
              "backbone": _export_backbone}


def run_export(model: keras.Model, spec: ModelSpec, config: ExportConfig, images: np.ndarray,
               representative=None) -> dict:
  """Exports `model` in every configured format, checks parity, times each, writes the result file.

  Args:
    model: from `load_model`; spec: from `resolve_spec`.
    config: the `ExportConfig`; its output directory is checked and created here.
    images: normalised test images [N, H, W, C] for parity (the issue asks for 256).
    representative: images or a callable (see `export_tflite`) from the training split; needed for
      `tflite_int8`.

  Returns:
    The content of `export_result.json`.

  Raises:
    ExportError: for a bad output directory or a format this machine cannot produce.
    ParityError: if any artifact fails parity; the figures are in the message and in the result file.
  """
  _check_feasible(config, representative)
  prepare_output_dir(config.output_dir, config.overwrite)
  images = np.asarray(images, np.float32)
  if images.shape[1:] != spec.input_shape or not len(images):
    raise ExportError(f"Parity images have shape {images.shape}; the model takes [N, "
                      f"{', '.join(map(str, spec.input_shape))}] with N >= 1.")
  reference = predict_in_batches(keras_predictor(model), images, config.batch)
  run = _Run(model, spec, config, images, representative, reference, {})
  run.results["keras"] = {"latency": measure_latency(keras_predictor(model), run.timing_batch(),
                                                     config.latency_runs, config.warmup_runs)}
  for name in config.formats:
    _EXPORTERS[name](run)
  result = _result(run)
  files.write_json(os.path.join(config.output_dir, RESULT_FILE), result)
  failures = [entry["parity_failure"] for entry in run.results.values() if entry.get("parity_failure")]
  if failures:
    raise ParityError(f"Export parity failed ({'; '.join(failures)}); figures in "
                      f"{os.path.join(config.output_dir, RESULT_FILE)}.")
  return result


def _check_feasible(config: ExportConfig, representative) -> None:
  """Fails before any work when a requested format cannot be made here."""
  if "tflite_int8" in config.formats and representative is None:
    raise ExportError("Format tflite_int8 needs a representative dataset (images from the training "
                      "split) to calibrate quantisation; none was given.")
  if "tensorrt" in config.formats:
    tensorrt_route()


def _result(run: _Run) -> dict:
  spec = run.spec
  return {"model": run.model.name, "space": spec.space.to_json(), "arch": list(spec.arch),
          "arch_string": spec.space.arch_to_string(spec.arch), "input_shape": list(spec.input_shape),
          "num_classes": spec.num_classes, "predicted_latency_ms": spec.predicted_latency_ms,
          "batch": run.config.batch, "parity_images": len(run.images),
          "input_contract": "float32 [N, H, W, C], pixel / 127.5 - 1", "formats": run.results}


# Images for parity and calibration ------------------------------------------------------------------


def dataset_images(config: data_config.DataConfig, split: str, count: int) -> np.ndarray:
  """`count` images of `split` ("test" or "validation", the latter carved from the training split),
  preprocessed as for evaluation: the parity set and the int8 representative dataset."""
  splits = data_sources.load(config)
  images, _ = next(iter(batches_lib.eval_pipeline(splits, config, count, split=split)))
  return images.numpy()
