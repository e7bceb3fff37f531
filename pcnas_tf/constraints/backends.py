"""Latency measurement backends behind one interface, chosen by name.

  tflite    TFLite converter + LiteRT interpreter (XNNPACK, `threads`); the default on CPU.
  tf        a traced `tf.function` on TensorFlow's current device, optionally XLA-compiled.
  tensorrt  TF-TRT where TensorFlow is linked with TensorRT, else ONNX (tf2onnx) + a TensorRT engine
            timed with CUDA events; fp32 or fp16. Needs an NVIDIA GPU.

Timing protocol. The development VM has 2 cores shared with other jobs, and its speed drifts: the minimum
of each block of 100 runs of one LiteRT network varied by 40% within 20 seconds (load 2.5). Timing one
model after another (min of 40 runs each) then gives numbers that do not repeat: two passes over the
same 50 networks differed by more than 10% for 13% of them at load 1, and for 72% at load 4.7. The
minimum cannot fix a slowdown that lasts longer than a whole block of runs. So `measure_group` times
many models together:
  * interleaved: each round visits every model once, in a new random order, so every model's samples
    are spread over the whole measurement instead of one short window;
  * paired with a reference network: each visit times the model (best of `repeats` calls) and then
    the reference; the `ratio` estimator is the median over rounds of model time / reference time,
    times a unit of milliseconds (table.py: from the networks' own minima, and each group's ratios
    first divided by its yardstick networks' factor, as the reference's speed relative to other
    networks moves from group to group). A slowdown that affects both neighbours alike cancels in
    the ratio.
Under load 4.7 that repeated to within 10% for all 50 networks (within 5% for 98%; median 1.5%),
where the interleaved minimum alone had 2% of networks over 10% and 10% over 5%; over three passes
a minute apart at load 4-6 it was 4.7% over 10% (the model's own interleaved minimum: 6%). What remained
was placement: two LiteRT interpreters of the SAME flatbuffer differ in speed by up to 5% (once by
80%) for as long as they live, as their buffers land at different addresses, so one instance per model
put a persistent error on each timing and a shared bias on everything paired with one reference
instance (a table built with one reference interpreter and validated with another was off by 6%
across the board). The tflite backend therefore builds 3 interpreters per model and 8 of the
reference, and the rounds rotate through them. 1 thread: 2 threads
on 2 shared cores compete with the other jobs for both. `min` and `median` of the model's own samples
stay available as estimators.
"""

import abc
import dataclasses
import platform
from typing import Sequence


from pcnas_tf import console
from pcnas_tf import errors
from pcnas_tf.constraints import tensorrt
from pcnas_tf.constraints import timing

ESTIMATORS = ("ratio", "min", "median")
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
    runs: timed calls of `measure`; rounds of `measure_group` (each times every model `repeats`
      times and the reference as often).
    repeats: calls per model per round of `measure_group`; the round keeps the fastest.
    estimator: `ratio`, `min` or `median`, the statistic the table uses (see the module docstring).
  """
  name: str = "tflite"
  threads: int = 1
  xla: bool = False
  precision: str = "fp32"
  warmup: int = 5
  runs: int = 60
  estimator: str = "ratio"
  repeats: int = 2

  def validate(self) -> None:
    if self.name not in BACKENDS:
      raise errors.UserError(f"Unknown latency backend {self.name!r}; allowed: {', '.join(BACKENDS)}.")
    if self.threads < 1:
      raise errors.UserError(f"Threads {self.threads} must be >= 1.")
    if self.warmup < 0 or self.runs < 1 or self.repeats < 1:
      raise errors.UserError(f"Warm-up {self.warmup} must be >= 0, runs {self.runs} and repeats "
                             f"{self.repeats} >= 1.")
    if self.estimator not in ESTIMATORS:
      raise errors.UserError(f"Unknown estimator {self.estimator!r}; allowed: {', '.join(ESTIMATORS)}.")
    if self.precision not in PRECISIONS:
      raise errors.UserError(f"Unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}.")

  def settings(self) -> dict:
    """The options that change what is measured (the table's identity; warm-up and runs do not)."""
    relevant = {"tflite": ("threads",), "tf": ("xla",), "tensorrt": ("precision",)}[self.name]
    return {"estimator": self.estimator, **{key: getattr(self, key) for key in relevant}}


class Backend(abc.ABC):
  """Times Keras models on one device with one runtime."""

  def __init__(self, config: BackendConfig):
    self.config = config

  @abc.abstractmethod
  def device(self) -> str:
    """A human-readable description of what is timed on, recorded in tables."""

  def prepare(self, model, input_shape: Sequence[int]):
    """A call that runs `model` once on a random input of `input_shape` and blocks until done, or a
    list of such calls (independent instances of the model, see `time_interleaved`)."""
    raise NotImplementedError(f"The {self.config.name} backend times whole models only.")

  def prepare_reference(self, model, input_shape):
    """The reference `measure_group` pairs every model with (a prepared call, by default)."""
    return self.prepare(model, input_shape)

  def measure(self, model, input_shape: Sequence[int]) -> timing.Timing:
    """Times `model` alone on a random input of `input_shape` (batch included): min, median, spread."""
    call = self.prepare(model, input_shape)
    call = call[0] if isinstance(call, list) else call
    return timing.time_calls(call, self.config.warmup, self.config.runs)

  def measure_group(self, jobs: Sequence[tuple[object, Sequence[int]]],
                    reference) -> list[timing.Timing]:
    """Times (model, input shape) jobs interleaved and paired with `reference` (`prepare_reference`)."""
    calls = [self.prepare(model, shape) for model, shape in jobs]
    return timing.time_interleaved(calls, reference, self.config.warmup, self.config.runs,
                            self.config.repeats)


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


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

  # Interpreters of the SAME flatbuffer differ in speed by up to 5% (one by 80%) for as long as they
  # live, as their buffers land at different addresses; `prepare` returns several and the timing loop
  # rotates through them, so no one placement decides a model's time. The reference, which every
  # entry of a table and every later timing is divided by, gets more.
  INSTANCES = 3
  REFERENCE_INSTANCES = 8

  def prepare_reference(self, model, input_shape):
    return self.prepare(model, input_shape, self.REFERENCE_INSTANCES)

  def prepare(self, model, input_shape, instances=None):
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    flatbuffer = to_tflite(model, input_shape)
    calls = []
    for _ in range(instances or self.INSTANCES):
      with console.native_stderr_held():  # LiteRT's "Created ... XNNPACK delegate" line
        interpreter = Interpreter(model_content=flatbuffer, num_threads=self.config.threads)
        interpreter.allocate_tensors()
      interpreter.set_tensor(interpreter.get_input_details()[0]["index"], timing.random_input(input_shape))
      calls.append(interpreter.invoke)
    return calls


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

  def prepare(self, model, input_shape):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    call = tf.function(lambda images: model(images, training=False), jit_compile=self.config.xla)
    images = tf.constant(timing.random_input(input_shape))
    call(images)  # traces (and compiles) now, outside any timing
    # `.numpy()` waits for the device; the copied logits are a few bytes.
    return lambda: call(images).numpy()


class TensorRTBackend(Backend):
  """TensorRT on an NVIDIA GPU: TF-TRT when TensorFlow is linked with it, else ONNX + a TensorRT engine."""

  def __init__(self, config):
    super().__init__(config)
    self._runtime = tensorrt.load_timer(config.precision)

  def device(self) -> str:
    return f"{tensorrt.gpu_name()}, TensorRT {self._runtime.kind} {self.config.precision}"

  def measure(self, model, input_shape):
    return self._runtime.measure(model, input_shape, self.config.warmup, self.config.runs)

  def measure_group(self, jobs, reference):
    """CUDA-event times do not drift with CPU load: each model alone, ratio of minimums.

    `reference` is the (model, input shape) pair here, as TensorRT has no host-timed call to share.
    """
    reference_ms = self.measure(*reference).min_ms
    return [dataclasses.replace(t, ratio=t.min_ms / reference_ms, reference_ms=reference_ms)
            for t in (self.measure(model, shape) for model, shape in jobs)]

  def prepare_reference(self, model, input_shape):
    return (model, input_shape)


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
  return "tensorrt" if tensorrt.unavailable_reason() is None else "tflite"


