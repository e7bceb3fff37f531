"""Latency measurement backends behind one interface, chosen by name.

  tflite    TFLite converter + LiteRT interpreter (XNNPACK, `threads`); the default on CPU.
  tf        a traced `tf.function` on TensorFlow's current device, optionally XLA-compiled.
  tensorrt  TF-TRT where TensorFlow is linked with TensorRT, else ONNX (tf2onnx) + a TensorRT engine
            timed with CUDA events; fp32 or fp16. Needs an NVIDIA GPU.

Every timing warms up, then times `runs` calls and records min, median and spread. The default estimator
is the minimum with 1 thread: on the shared 2-core development VM, LiteRT with 1 thread and the minimum of
40 runs reproduced within 3%, while 2 threads and the median varied by up to 26%. Noise from other
processes only ever adds time, so the minimum is the estimate closest to the quiet machine.
"""

import abc
import dataclasses
import platform
import time
from typing import Callable, Sequence

import numpy as np

from pcnas_tf import errors

ESTIMATORS = ("min", "median")
PRECISIONS = ("fp32", "fp16")


@dataclasses.dataclass(frozen=True)
class BackendConfig:
  """How to time a model; everything here is recorded in the table's metadata.

  Attributes:
    name: one of `BACKENDS`.
    threads: CPU threads of the LiteRT interpreter (tflite only).
    xla: compile the tf.function with XLA (tf only).
    precision: `fp32` or `fp16` (tensorrt only).
    warmup: untimed calls before timing.
    runs: timed calls.
    estimator: `min` or `median`, the statistic the table uses.
  """
  name: str = "tflite"
  threads: int = 1
  xla: bool = False
  precision: str = "fp32"
  warmup: int = 5
  runs: int = 40
  estimator: str = "min"

  def validate(self) -> None:
    if self.name not in BACKENDS:
      raise errors.UserError(f"Unknown latency backend {self.name!r}; allowed: {', '.join(BACKENDS)}.")
    if self.threads < 1:
      raise errors.UserError(f"Threads {self.threads} must be >= 1.")
    if self.warmup < 0 or self.runs < 1:
      raise errors.UserError(f"Warm-up {self.warmup} must be >= 0 and runs {self.runs} >= 1.")
    if self.estimator not in ESTIMATORS:
      raise errors.UserError(f"Unknown estimator {self.estimator!r}; allowed: {', '.join(ESTIMATORS)}.")
    if self.precision not in PRECISIONS:
      raise errors.UserError(f"Unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}.")

  def settings(self) -> dict:
    """The options that change what is measured (the table's identity; warm-up and runs do not)."""
    relevant = {"tflite": ("threads",), "tf": ("xla",), "tensorrt": ("precision",)}[self.name]
    return {"estimator": self.estimator, **{key: getattr(self, key) for key in relevant}}


@dataclasses.dataclass(frozen=True)
class Timing:
  """One model's timing in milliseconds; `spread_ms` is the 10th-to-90th percentile range."""
  min_ms: float
  median_ms: float
  spread_ms: float
  runs: int

  @classmethod
  def from_samples(cls, samples_ms: Sequence[float]) -> "Timing":
    low, median, high = np.percentile(samples_ms, [10, 50, 90])
    return cls(float(np.min(samples_ms)), float(median), float(high - low), len(samples_ms))

  def value(self, estimator: str) -> float:
    return self.min_ms if estimator == "min" else self.median_ms


def time_calls(call: Callable[[], object], warmup: int, runs: int,
               clock: Callable[[], float] = time.perf_counter) -> Timing:
  """Times `call` (which must block until its result is ready) after `warmup` untimed calls."""
  for _ in range(warmup):
    call()
  samples = []
  for _ in range(runs):
    start = clock()
    call()
    samples.append((clock() - start) * 1e3)
  return Timing.from_samples(samples)


class Backend(abc.ABC):
  """Times Keras models on one device with one runtime."""

  def __init__(self, config: BackendConfig):
    self.config = config

  @abc.abstractmethod
  def device(self) -> str:
    """A human-readable description of what is timed on, recorded in tables."""

  @abc.abstractmethod
  def measure(self, model, input_shape: Sequence[int]) -> Timing:
    """Times `model` on a random input of `input_shape` (batch included)."""


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _random_input(input_shape):
  return np.random.default_rng(0).standard_normal(tuple(input_shape)).astype(np.float32)


def _concrete_function(model, input_shape):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  call = tf.function(lambda images: model(images, training=False))
  return call.get_concrete_function(tf.TensorSpec(tuple(input_shape), tf.float32))


def to_tflite(model, input_shape: Sequence[int]) -> bytes:
  """Converts a Keras model at a fixed input shape to a TFLite flatbuffer (float32).

  The converter's default route saves and reloads a SavedModel: about 10x slower here, and it keeps
  resource variables and unfused BatchNorm in the graph. Freezing directly gives the deployable graph
  (BN folded into the convolutions, activations fused).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [_concrete_function(model, input_shape)], model)
  converter.experimental_lower_to_saved_model = False
  return converter.convert()


class TFLiteBackend(Backend):
  """LiteRT's interpreter on the CPU; LiteRT applies its XNNPACK delegate to float models by default."""

  def device(self) -> str:
    return f"{cpu_name()}, LiteRT XNNPACK, {self.config.threads} thread(s)"

  def measure(self, model, input_shape):
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    interpreter = Interpreter(model_content=to_tflite(model, input_shape),
                              num_threads=self.config.threads)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], _random_input(input_shape))
    return time_calls(interpreter.invoke, self.config.warmup, self.config.runs)


class TFBackend(Backend):
  """A traced tf.function on TensorFlow's current device (the first GPU if there is one)."""

  def device(self) -> str:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
      name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    else:
      name = cpu_name()
    return f"{name}, TensorFlow {'XLA' if self.config.xla else 'graph'}"

  def measure(self, model, input_shape):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    call = tf.function(lambda images: model(images, training=False), jit_compile=self.config.xla)
    images = tf.constant(_random_input(input_shape))
    # `.numpy()` waits for the device; the copied logits are a few bytes.
    return time_calls(lambda: call(images).numpy(), self.config.warmup, self.config.runs)


class TensorRTBackend(Backend):
  """TensorRT on an NVIDIA GPU: TF-TRT when TensorFlow is linked with it, else ONNX + a TensorRT engine."""

  def __init__(self, config):
    super().__init__(config)
    from pcnas_tf.latency import tensorrt_runtime  # pylint: disable=g-import-not-at-top
    self._runtime = tensorrt_runtime.load(config.precision)

  def device(self) -> str:
    return f"{self._runtime.gpu_name()}, TensorRT {self._runtime.kind} {self.config.precision}"

  def measure(self, model, input_shape):
    return self._runtime.measure(model, input_shape, self.config.warmup, self.config.runs)


BACKENDS = {"tflite": TFLiteBackend, "tf": TFBackend, "tensorrt": TensorRTBackend}


def make_backend(config: BackendConfig) -> Backend:
  """The backend named by `config`, after validating it.

  Raises:
    UserError: for an unknown name or option, or a backend this machine cannot run.
  """
  config.validate()
  return BACKENDS[config.name](config)


def default_backend_name() -> str:
  """`tensorrt` where a GPU and TensorRT are usable, else `tflite`."""
  from pcnas_tf.latency import tensorrt_runtime  # pylint: disable=g-import-not-at-top
  return "tensorrt" if tensorrt_runtime.unavailable_reason() is None else "tflite"


