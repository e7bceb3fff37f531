"""TensorRT timing: TF-TRT where TensorFlow is linked with TensorRT, else ONNX + a TensorRT engine.

The pip build of TensorFlow is not linked with TensorRT (`is_tensorrt_enabled()` is False), so the usual
route is: Keras model -> tf2onnx -> TensorRT builder (fp32 or fp16) -> engine timed with CUDA events on
one stream. That route needs an NVIDIA GPU, the `tensorrt` package and CUDA's Python bindings
(`cuda-python`); `unavailable_reason()` says which is missing, and `load` raises it as a UserError.
"""

import os
import shutil
import tempfile

import numpy as np

from pcnas_tf import errors
from pcnas_tf.latency import backends

_ONNX_OPSET = 17


def _tf_trt_linked() -> bool:
  try:
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
  """Why TensorRT timing cannot run on this machine, or None when it can."""
  if not _gpu_present():
    return "the tensorrt backend needs an NVIDIA GPU and none was found; use --backend=tflite or tf"
  if _tf_trt_linked():
    return None
  for module, package in (("tensorrt", "tensorrt"), ("onnx", "onnx"), ("tf2onnx", "tf2onnx")):
    try:
      __import__(module)
    except ImportError:
      return (f"the tensorrt backend needs the Python package {package!r} (TensorFlow here is not "
              f"linked with TensorRT); install it or use --backend=tflite or tf")
  try:
    _cudart()
  except ImportError:
    return "the tensorrt backend needs CUDA's Python bindings; install 'cuda-python'"
  return None


def load(precision: str):
  """The TensorRT runtime this machine supports.

  Raises:
    UserError: naming what is missing (a GPU, or a package).
  """
  reason = unavailable_reason()
  if reason is not None:
    raise errors.UserError(f"Cannot time with TensorRT: {reason}.")
  return TfTrtRuntime(precision) if _tf_trt_linked() else OnnxTrtRuntime(precision)


class TfTrtRuntime:
  """TF-TRT: the model's SavedModel rewritten with TensorRT segments, timed as a tf.function."""
  kind = "TF-TRT"

  def __init__(self, precision):
    self.precision = precision

  def gpu_name(self) -> str:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    gpu = tf.config.list_physical_devices("GPU")[0]
    return tf.config.experimental.get_device_details(gpu).get("device_name", "GPU")

  def measure(self, model, input_shape, warmup, runs):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tensorflow.python.compiler.tensorrt import trt_convert as trt  # pylint: disable=g-import-not-at-top
    workdir = tempfile.mkdtemp(prefix="pcnas_trt_")
    try:
      images = tf.constant(backends._random_input(input_shape))  # pylint: disable=protected-access
      module = tf.Module()
      module.model = model
      module.serve = tf.function(lambda x: model(x, training=False),
                                 input_signature=[tf.TensorSpec(tuple(input_shape), tf.float32)])
      tf.saved_model.save(module, f"{workdir}/model", signatures=module.serve)
      mode = trt.TrtPrecisionMode.FP16 if self.precision == "fp16" else trt.TrtPrecisionMode.FP32
      converter = trt.TrtGraphConverterV2(input_saved_model_dir=f"{workdir}/model",
                                          precision_mode=mode)
      call = converter.convert()
      converter.build(input_fn=lambda: [images])  # engines are built now, not inside the timed calls
      return backends.time_calls(lambda: call(images)[next(iter(call.structured_outputs))].numpy(),
                                 warmup, runs)
    finally:
      shutil.rmtree(workdir, ignore_errors=True)


def _check(result):
  """cuda-python returns (error, *values); raises on an error, returns the values."""
  error, *values = result
  if int(error) != 0:
    raise RuntimeError(f"CUDA call failed with error {error}.")
  return values[0] if len(values) == 1 else values


class OnnxTrtRuntime:
  """tf2onnx export, a TensorRT engine per model, timed with CUDA events around `execute_async_v3`."""
  kind = "ONNX"

  def __init__(self, precision):
    import tensorrt  # pylint: disable=g-import-not-at-top
    self.precision = precision
    self.trt = tensorrt
    self.logger = tensorrt.Logger(tensorrt.Logger.WARNING)
    self.cudart = _cudart()

  def gpu_name(self) -> str:
    properties = _check(self.cudart.cudaGetDeviceProperties(0))
    name = properties.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")

  def measure(self, model, input_shape, warmup, runs):
    engine = self._build_engine(self._to_onnx(model, input_shape))
    context = engine.create_execution_context()
    buffers = self._bind_buffers(engine, context, input_shape)
    try:
      return self._time(context, warmup, runs)
    finally:
      for pointer in buffers:
        _check(self.cudart.cudaFree(pointer))

  def _to_onnx(self, model, input_shape) -> bytes:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tf2onnx  # pylint: disable=g-import-not-at-top
    call = tf.function(lambda images: model(images, training=False))
    proto, _ = tf2onnx.convert.from_function(
        call, input_signature=[tf.TensorSpec(tuple(input_shape), tf.float32, name="images")],
        opset=_ONNX_OPSET)
    return proto.SerializeToString()

  def _build_engine(self, onnx_bytes):
    trt = self.trt
    builder = trt.Builder(self.logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, self.logger)
    if not parser.parse(onnx_bytes):
      problems = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
      raise RuntimeError(f"TensorRT could not parse the ONNX model: {problems}")
    config = builder.create_builder_config()
    if self.precision == "fp16":
      config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
      raise RuntimeError("TensorRT failed to build an engine; see its log above.")
    return trt.Runtime(self.logger).deserialize_cuda_engine(serialized)

  def _bind_buffers(self, engine, context, input_shape):
    """Allocates one device buffer per I/O tensor; the input is filled with random images."""
    pointers = []
    for index in range(engine.num_io_tensors):
      name = engine.get_tensor_name(index)
      size = int(np.prod(engine.get_tensor_shape(name))) * 4  # float32 I/O, also under fp16 layers
      pointer = _check(self.cudart.cudaMalloc(size))
      pointers.append(pointer)
      context.set_tensor_address(name, int(pointer))
      if engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT:
        host = backends._random_input(input_shape)  # pylint: disable=protected-access
        _check(self.cudart.cudaMemcpy(pointer, host.ctypes.data, host.nbytes,
                                      self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
    return pointers

  def _time(self, context, warmup, runs):
    """GPU time of `runs` engine launches, each between two events on one stream."""
    cudart = self.cudart
    stream = _check(cudart.cudaStreamCreate())
    start, end = _check(cudart.cudaEventCreate()), _check(cudart.cudaEventCreate())
    try:
      for _ in range(warmup):
        context.execute_async_v3(int(stream))
      _check(cudart.cudaStreamSynchronize(stream))
      samples = []
      for _ in range(runs):
        _check(cudart.cudaEventRecord(start, stream))
        context.execute_async_v3(int(stream))
        _check(cudart.cudaEventRecord(end, stream))
        _check(cudart.cudaEventSynchronize(end))
        samples.append(float(_check(cudart.cudaEventElapsedTime(start, end))))
      return backends.Timing.from_samples(samples)
    finally:
      for event in (start, end):
        _check(cudart.cudaEventDestroy(event))
      _check(cudart.cudaStreamDestroy(stream))
