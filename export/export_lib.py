"""Export of a trained PC-NAS model: SavedModel, TFLite (float32, int8), ONNX, TensorRT and a backbone.

Every export is checked against the Keras model on the same images and timed on this machine; the figures
go to `export_result.json` in the output directory, next to the latency the search predicted. A parity
failure raises `ParityError` (after the figures are written), so a broken artifact never passes silently.

Input contract of every artifact: float32 images of the training shape [batch, H, W, C], normalised as in
training (`pcnas_tf.data`: pixel / 127.5 - 1, so [-1, 1]). The SavedModel adds an `encoded_images`
signature that takes JPEG/PNG bytes and does that normalisation itself. Classifier outputs are softmax
probabilities (the Keras model returns logits).

The model and its spec come from `spec`, the artifacts from `writers`, and their parity and latency
figures from `predictors`; this module checks the configuration and the output directory and runs the
whole export.

Usage:

  model = spec_lib.load_model("run/model.keras")
  spec = spec_lib.resolve_spec(model, spec_lib.find_spec_file("run/model.keras"))
  config = export_lib.ExportConfig(output_dir="run/export", formats=("saved_model", "tflite"))
  result = export_lib.run_export(model, spec, config, parity_images, representative_images)
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from export import export_errors
from export import predictors
from export import spec as spec_lib
from export import writers
from pcnas_tf import files
from pcnas_tf.data import data_config
from pcnas_tf.data import sources as data_sources
from pcnas_tf.data import batches as batches_lib
from pcnas_tf import errors

FORMATS = ("saved_model", "tflite", "tflite_int8", "onnx", "tensorrt", "backbone")
DEFAULT_FORMATS = ("saved_model", "tflite", "tflite_int8", "onnx", "backbone")
TENSORRT_PRECISIONS = ("fp32", "fp16")
RESULT_FILE = "export_result.json"


class ParityError(export_errors.ExportError):
  """An exported artifact computes something different from the Keras model."""


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
      raise export_errors.ExportError(
          f"Unknown export format {', '.join(unknown) or '(none given)'}; "
          f"allowed: {', '.join(FORMATS)}.")
    if self.batch < 1 or self.latency_runs < 1 or self.warmup_runs < 0:
      raise export_errors.ExportError(
          f"Batch {self.batch} and latency runs {self.latency_runs} must be >= 1, "
          f"warm-up runs {self.warmup_runs} >= 0.")
    if not 0 <= self.min_top1_agreement <= 1:  # written so that NaN fails too
      raise export_errors.ExportError(
          f"Minimum top-1 agreement {self.min_top1_agreement} (--min_top1_agreement) must be in [0, 1].")
    if not self.float_tolerance >= 0:
      raise export_errors.ExportError(f"Float tolerance {self.float_tolerance} must be >= 0.")


def parse_formats(text: str) -> tuple[str, ...]:
  """Parses a comma-separated format list such as `saved_model,tflite`; raises on an unknown name."""
  formats = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
  unknown = [name for name in formats if name not in FORMATS]
  if unknown or not formats:
    raise export_errors.ExportError(
        f"Unknown export format {', '.join(unknown) or '(none given)'}; "
        f"allowed: {', '.join(FORMATS)}.")
  return formats


# Output directory -----------------------------------------------------------------------------------


def check_output_dir(path: str, overwrite: bool) -> None:
  """Raises if `path` exists without `overwrite`, is a file, or cannot be written or created."""
  if files.exists(path) and not overwrite:
    raise export_errors.ExportError(
        f"Output directory {path!r} already exists; pass --overwrite to replace its "
        f"exports.")
  if files.exists(path) and not files.isdir(path):
    raise export_errors.ExportError(f"Output path {path!r} exists and is not a directory.")
  try:
    files.check_writable_dir(path, "Output directory", "--output_dir")
  except errors.UserError as error:
    raise export_errors.ExportError(str(error)) from error


def prepare_output_dir(path: str, overwrite: bool) -> None:
  """Creates the output directory; an existing one is an error unless `overwrite`."""
  check_output_dir(path, overwrite)
  try:
    files.make_dir(path, "Output directory")
  except errors.UserError as error:
    raise export_errors.ExportError(str(error)) from error


# The whole export -----------------------------------------------------------------------------------


def parity_failure(name: str, figures: dict, config: ExportConfig, quantised: bool) -> str | None:
  """Why `name` fails parity, or None: float formats by max abs, quantised ones by top-1 agreement."""
  if quantised and figures["top1_agreement"] < config.min_top1_agreement:
    return (f"{name}: top-1 agreement {figures['top1_agreement']:.4f} < "
            f"{config.min_top1_agreement} on {figures['images']} images")
  if not quantised and figures["max_abs"] > config.float_tolerance:
    return (f"{name}: max abs difference {figures['max_abs']:.3g} > {config.float_tolerance} on "
            f"{figures['images']} images")
  return None


@dataclasses.dataclass
class _Run:
  """What one export call shares between formats."""
  model: keras.Model
  spec: spec_lib.ModelSpec
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

  def record(self, name: str, path: str, predict: predictors.Predict, quantised: bool = False) -> None:
    """Checks parity of one artifact, times it, and records both."""
    figures = predictors.parity(self.reference,
                                predictors.predict_in_batches(predict, self.images, self.config.batch))
    failure = parity_failure(name, figures, self.config, quantised)
    self.results[name] = {
        "path": os.path.relpath(path, self.config.output_dir), "parity": figures,
        "parity_ok": failure is None, "parity_failure": failure,
        "latency": predictors.measure_latency(predict, self.timing_batch(), self.config.latency_runs,
                                              self.config.warmup_runs),
        "predicted_latency_ms": self.spec.predicted_latency_ms}


def _export_saved_model(run: _Run) -> None:
  path = run.path("saved_model")
  writers.export_saved_model(run.model, path, run.config.top_k)
  run.record("saved_model", path, predictors.saved_model_predictor(path))


def _export_tflite(run: _Run) -> None:
  path = run.path("model.tflite")
  writers.export_tflite(run.model, path)
  run.record("tflite", path, predictors.tflite_predictor(path))


def _export_tflite_int8(run: _Run) -> None:
  path = run.path("model_int8.tflite")
  writers.export_tflite(run.model, path, run.representative)
  run.record("tflite_int8", path, predictors.tflite_predictor(path), quantised=True)


def _export_onnx(run: _Run) -> None:
  path = run.path("model.onnx")
  writers.export_onnx(run.model, path)
  run.record("onnx", path, predictors.onnx_predictor(path))


def _export_tensorrt(run: _Run) -> None:
  """One TensorRT export per precision; fp16 is judged like int8, by top-1 agreement."""
  route = writers.tensorrt_route()
  for precision in TENSORRT_PRECISIONS:
    if route == "tf_trt":
      if not files.isdir(run.path("saved_model")):
        writers.export_saved_model(run.model, run.path("saved_model"), run.config.top_k)
      path = run.path(f"tensorrt_{precision}")
      predict = writers.export_tf_trt(run.path("saved_model"), path, precision, run.timing_batch())
    else:
      if not files.isfile(run.path("model.onnx")):
        writers.export_onnx(run.model, run.path("model.onnx"))
      path = run.path(f"model_{precision}.plan")
      predict = writers.export_tensorrt_engine(run.path("model.onnx"), path, precision, run.config.batch)
    run.record(f"tensorrt_{precision}", path, predict, quantised=precision == "fp16")
    run.results[f"tensorrt_{precision}"]["route"] = route


def _export_backbone(run: _Run) -> None:
  """The backbone's SavedModel is checked against the Keras backbone's features, not probabilities."""
  keras_path, saved_path = run.path("backbone.keras"), run.path("backbone_saved_model")
  backbone = writers.export_backbone(run.model, run.spec, keras_path, saved_path)
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
      "latency": predictors.measure_latency(predict, batch, run.config.latency_runs,
                                            run.config.warmup_runs),
      "predicted_latency_ms": run.spec.predicted_latency_ms}


_EXPORTERS = {"saved_model": _export_saved_model, "tflite": _export_tflite,
              "tflite_int8": _export_tflite_int8, "onnx": _export_onnx, "tensorrt": _export_tensorrt,
              "backbone": _export_backbone}


def run_export(model: keras.Model, spec: spec_lib.ModelSpec, config: ExportConfig, images: np.ndarray,
               representative=None) -> dict:
  """Exports `model` in every configured format, checks parity, times each, writes the result file.

  Args:
    model: from `spec.load_model`; spec: from `spec.resolve_spec`.
    config: the `ExportConfig`; its output directory is checked and created here.
    images: normalised test images [N, H, W, C] for parity (the issue asks for 256).
    representative: images or a callable (see `writers.export_tflite`) from the training split; needed for
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
    raise export_errors.ExportError(
        f"Parity images have shape {images.shape}; the model takes [N, "
        f"{', '.join(map(str, spec.input_shape))}] with N >= 1.")
  reference = predictors.predict_in_batches(predictors.keras_predictor(model), images, config.batch)
  run = _Run(model, spec, config, images, representative, reference, {})
  run.results["keras"] = {"latency": predictors.measure_latency(
      predictors.keras_predictor(model), run.timing_batch(), config.latency_runs, config.warmup_runs)}
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
    raise export_errors.ExportError(
        "Format tflite_int8 needs a representative dataset (images from the training "
        "split) to calibrate quantisation; none was given.")
  if "tensorrt" in config.formats:
    writers.tensorrt_route()


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
  if count < 1:
    raise export_errors.ExportError(f"Image count {count} of split {split!r} must be at least 1.")
  splits = data_sources.load(config)
  images, _ = next(iter(batches_lib.eval_pipeline(splits, config, count, split=split)))
  return images.numpy()
