"""TensorRT, in one place for latency tables and export: availability, TF-TRT conversion, engines
built from ONNX, and running and timing them with checked CUDA calls.

The pip build of TensorFlow is not linked with TensorRT (`is_tensorrt_enabled()` is False), so the usual
route is: Keras model -> tf2onnx -> TensorRT builder (fp32 or fp16) -> engine run through cuda-python.
That route needs an NVIDIA GPU, the `tensorrt` package and CUDA's Python bindings (`cuda-python`);
`unavailable_reason()` says which is missing. Every CUDA call's status is checked (`check`), and device
memory and CUDA objects are freed in `finally`, so a failing call leaks nothing.
"""

import contextlib
import os
import shutil
import tempfile

import numpy as np

from pcnas_tf import errors
from pcnas_tf.constraints import timing

ONNX_OPSET = 17
INPUT, OUTPUT = "images", "probabilities"  # tensor names of the ONNX models built here and by export


def tf_trt_linked() -> bool:
  """Whether this TensorFlow build links TensorRT (pip builds do not)."""
  try:
    # TF 2.21 has no public test; trt_convert itself checks this private binding.
    from tensorflow.compiler.tf2tensorrt import _pywrap_py_utils  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  return bool(_pywrap_py_utils.is_tensorrt_enabled())


def _gpu_present() -> bool:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # The CPU-only pip TensorFlow sees no GPU even where one exists, so the driver's device node counts too.
  return bool(tf.config.list_physical_devices("GPU")) or os.path.exists("/dev/nvidiactl")


def _cudart():
  try:
    from cuda.bindings import runtime  # pylint: disable=g-import-not-at-top
  except ImportError:
    from cuda import cudart as runtime  # pylint: disable=g-import-not-at-top
  return runtime


def unavailable_reason() -> str | None:
  """What TensorRT needs and this machine lacks, as the end of "TensorRT needs ...", or None."""
  if not _gpu_present():
    return "an NVIDIA GPU and none was found"
  if tf_trt_linked():
    return None
  for module, package in (("tensorrt", "tensorrt"), ("onnx", "onnx"), ("tf2onnx", "tf2onnx")):
    try:
      __import__(module)
    except ImportError:
      return (f"the Python package {package!r} (TensorFlow here is not linked with TensorRT), which is "
              f"not installed")
  try:
    _cudart()
  except ImportError:
    return "CUDA's Python bindings ('cuda-python'), which are not installed"
  return None


def route() -> str:
  """`tf_trt` where TensorFlow links TensorRT, else `onnx` (engines built from ONNX); call it after
  `unavailable_reason()` returned None."""
  return "tf_trt" if tf_trt_linked() else "onnx"


def check(result):
  """cuda-python returns (error, *values); raises on an error, returns the values."""
  error, *values = result
  if int(error) != 0:
    raise RuntimeError(f"CUDA call failed with error {error}.")
  return values[0] if len(values) == 1 else values


# Building ------------------------------------------------------------------------------------------


def tf_trt_convert(saved_model_dir: str, precision: str, sample: np.ndarray):
  """(converter, function): the SavedModel converted by TF-TRT, its engines built for `sample`'s shape
  (so no engine is built inside a timed or served call); `converter.save(path)` writes it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.compiler.tensorrt import trt_convert  # pylint: disable=g-import-not-at-top
  mode = trt_convert.TrtPrecisionMode.FP16 if precision == "fp16" else trt_convert.TrtPrecisionMode.FP32
  converter = trt_convert.TrtGraphConverterV2(input_saved_model_dir=saved_model_dir,
                                              precision_mode=mode)
  function = converter.convert()
  converter.build(input_fn=lambda: [tf.constant(sample)])
  return converter, function


def model_to_onnx(model, input_shape) -> bytes:
  """The Keras model at a fixed input shape as ONNX (input `images`), through tf2onnx."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf2onnx  # pylint: disable=g-import-not-at-top
  call = tf.function(lambda images: model(images, training=False))
  proto, _ = tf2onnx.convert.from_function(
      call, input_signature=[tf.TensorSpec(tuple(input_shape), tf.float32, name=INPUT)],
      opset=ONNX_OPSET)
  return proto.SerializeToString()


def logger():
  import tensorrt as trt  # pylint: disable=g-import-not-at-top
  return trt.Logger(trt.Logger.WARNING)


def build_engine(onnx_bytes: bytes, precision: str, trt_logger, batch_range=None) -> bytes:
  """A serialized TensorRT engine of the ONNX model, fp32 or fp16. `batch_range` (low, high): an
  optimisation profile for batches of low..high of the input's shape (the ONNX batch dimension is
  dynamic), else the ONNX model's fixed shape.

  Raises:
    RuntimeError: when TensorRT cannot parse the model or build the engine.
  """
  import tensorrt as trt  # pylint: disable=g-import-not-at-top
  builder = trt.Builder(trt_logger)
  network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
  parser = trt.OnnxParser(network, trt_logger)
  if not parser.parse(onnx_bytes):
    problems = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
    raise RuntimeError(f"TensorRT could not parse the ONNX model: {problems}")
  config = builder.create_builder_config()
  if precision == "fp16":
    config.set_flag(trt.BuilderFlag.FP16)
  if batch_range is not None:
    shape = tuple(network.get_input(0).shape)[1:]
    low, high = batch_range
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, (low, *shape), (high, *shape), (high, *shape))
    config.add_optimization_profile(profile)
  serialized = builder.build_serialized_network(network, config)
  if serialized is None:
    raise RuntimeError(f"TensorRT failed to build a {precision} engine; see its log above.")
  return bytes(serialized)


# Running -------------------------------------------------------------------------------------------


class Engine:
  """A deserialized engine and its execution context; runs host arrays, or is timed with CUDA events."""

  def __init__(self, engine_bytes: bytes, trt_logger):
    import tensorrt as trt  # pylint: disable=g-import-not-at-top
    self.cudart = _cudart()
    self.engine = trt.Runtime(trt_logger).deserialize_cuda_engine(engine_bytes)
    self.context = self.engine.create_execution_context()
    self._input_mode = trt.TensorIOMode.INPUT

  @contextlib.contextmanager
  def _device_buffers(self, inputs: dict):
    """One device buffer per I/O tensor for the current shapes, inputs copied in; freed on exit."""
    pointers = {}
    try:
      for index in range(self.engine.num_io_tensors):
        name = self.engine.get_tensor_name(index)
        size = int(np.prod(self.context.get_tensor_shape(name))) * 4  # float32 I/O, also under fp16
        pointers[name] = check(self.cudart.cudaMalloc(size))
        self.context.set_tensor_address(name, int(pointers[name]))
        if self.engine.get_tensor_mode(name) == self._input_mode:
          host = np.ascontiguousarray(inputs[name], np.float32)
          check(self.cudart.cudaMemcpy(pointers[name], host.ctypes.data, host.nbytes,
                                       self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
      yield pointers
    finally:
      for pointer in pointers.values():
        check(self.cudart.cudaFree(pointer))

  def __call__(self, images: np.ndarray) -> np.ndarray:
    """The engine's output for a batch of float32 images (any batch its profile allows)."""
    images = np.ascontiguousarray(images, np.float32)
    self.context.set_input_shape(INPUT, images.shape)
    output = np.empty(tuple(self.context.get_tensor_shape(OUTPUT)), np.float32)
    with self._device_buffers({INPUT: images}) as pointers:
      self.context.execute_async_v3(0)
      check(self.cudart.cudaStreamSynchronize(0))
      check(self.cudart.cudaMemcpy(output.ctypes.data, pointers[OUTPUT], output.nbytes,
                                   self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
    return output

  def time(self, input_shape, warmup: int, runs: int) -> timing.Timing:
    """GPU time of `runs` launches on a random input, each between two events on one stream."""
    cudart = self.cudart
    name = self.engine.get_tensor_name(0)
    with self._device_buffers({name: timing.random_input(input_shape)}):
      stream = check(cudart.cudaStreamCreate())
      events = []
      try:
        events.append(check(cudart.cudaEventCreate()))
        events.append(check(cudart.cudaEventCreate()))
        start, end = events
        for _ in range(warmup):
          self.context.execute_async_v3(int(stream))
        check(cudart.cudaStreamSynchronize(stream))
        samples = []
        for _ in range(runs):
          check(cudart.cudaEventRecord(start, stream))
          self.context.execute_async_v3(int(stream))
          check(cudart.cudaEventRecord(end, stream))
          check(cudart.cudaEventSynchronize(end))
          samples.append(float(check(cudart.cudaEventElapsedTime(start, end))))
        return timing.Timing.from_samples(samples)
      finally:
        for event in events:
          check(cudart.cudaEventDestroy(event))
        check(cudart.cudaStreamDestroy(stream))


# Timing for latency tables -------------------------------------------------------------------------


def load_timer(precision: str):
  """The TensorRT timer this machine supports.

  Raises:
    UserError: naming what is missing (a GPU, or a package).
  """
  reason = unavailable_reason()
  if reason is not None:
    raise errors.UserError(f"Cannot time with TensorRT: the tensorrt backend needs {reason}; use "
                           f"--backend=tflite or tf.")
  return TfTrtTimer(precision) if route() == "tf_trt" else OnnxTrtTimer(precision)


def gpu_name() -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
  name = check(_cudart().cudaGetDeviceProperties(0)).name
  return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


class TfTrtTimer:
  """TF-TRT: the model's SavedModel rewritten with TensorRT segments, timed as a tf.function."""
  kind = "TF-TRT"

  def __init__(self, precision):
    self.precision = precision

  def measure(self, model, input_shape, warmup, runs) -> timing.Timing:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    workdir = tempfile.mkdtemp(prefix="pcnas_trt_")
    try:
      images = tf.constant(timing.random_input(input_shape))
      module = tf.Module()
      module.model = model
      module.serve = tf.function(lambda x: model(x, training=False),
                                 input_signature=[tf.TensorSpec(tuple(input_shape), tf.float32)])
      tf.saved_model.save(module, f"{workdir}/model", signatures=module.serve)
      _, call = tf_trt_convert(f"{workdir}/model", self.precision, images.numpy())
      return timing.time_calls(lambda: call(images)[next(iter(call.structured_outputs))].numpy(),
                               warmup, runs)
    finally:
      shutil.rmtree(workdir, ignore_errors=True)


class OnnxTrtTimer:
  """tf2onnx export, a TensorRT engine per model, timed with CUDA events around `execute_async_v3`."""
  kind = "ONNX"

  def __init__(self, precision):
    self.precision = precision
    self.logger = logger()

  def measure(self, model, input_shape, warmup, runs) -> timing.Timing:
    engine_bytes = build_engine(model_to_onnx(model, input_shape), self.precision, self.logger)
    return Engine(engine_bytes, self.logger).time(input_shape, warmup, runs)
