"""Tests of the timing loop, the backends on a tiny model, and TensorRT's behaviour without a GPU."""

import pytest

from pcnas_tf import errors
from pcnas_tf.latency import backends
from pcnas_tf.latency import tensorrt_runtime


def test_time_calls_warms_up_then_records_min_median_spread():
  calls = []
  clock = iter([0.0, 0.004, 0.0, 0.001, 0.0, 0.002]).__next__  # three timed runs: 4, 1, 2 ms
  timing = backends.time_calls(lambda: calls.append(1), warmup=2, runs=3, clock=clock)
  assert len(calls) == 5
  assert timing.min_ms == pytest.approx(1.0) and timing.median_ms == pytest.approx(2.0)
  assert timing.runs == 3 and timing.spread_ms == pytest.approx(2.4)  # 90th - 10th percentile


@pytest.mark.parametrize("config, message", [
    (backends.BackendConfig("tpu"), "Unknown latency backend 'tpu'"),
    (backends.BackendConfig(threads=0), "Threads 0"),
    (backends.BackendConfig(estimator="mean"), "Unknown estimator 'mean'"),
    (backends.BackendConfig(precision="int8"), "Unknown precision 'int8'")])
def test_bad_settings_are_user_errors(config, message):
  with pytest.raises(errors.UserError, match=message):
    backends.make_backend(config)


def test_settings_identify_only_what_changes_the_measurement():
  assert backends.BackendConfig("tflite", threads=2).settings() == {"estimator": "min", "threads": 2}
  assert backends.BackendConfig("tf", xla=True).settings() == {"estimator": "min", "xla": True}


@pytest.fixture(scope="module")
def tiny_model():
  import keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((8, 8, 3))
  return keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))


@pytest.mark.parametrize("config", [backends.BackendConfig("tflite", runs=5),
                                    backends.BackendConfig("tf", runs=5)])
def test_cpu_backends_time_a_tiny_model(config, tiny_model):
  timing = backends.make_backend(config).measure(tiny_model, (2, 8, 8, 3))
  assert 0 < timing.min_ms <= timing.median_ms and timing.runs == 5


def test_tflite_graph_is_frozen_and_fused(tiny_model):
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_content=backends.to_tflite(tiny_model, (1, 8, 8, 3)))
  names = {op["op_name"] for op in interpreter._get_ops_details()}  # pylint: disable=protected-access
  assert names == {"CONV_2D"}  # no VAR_HANDLE / READ_VARIABLE from the SavedModel route


def test_tensorrt_without_gpu_or_package_is_a_clear_user_error():
  reason = tensorrt_runtime.unavailable_reason()
  if reason is None:
    pytest.skip("TensorRT is usable on this machine; the no-GPU error path cannot be exercised")
  with pytest.raises(errors.UserError, match="Cannot time with TensorRT: the tensorrt backend needs"):
    backends.make_backend(backends.BackendConfig("tensorrt"))
  assert backends.default_backend_name() == "tflite"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_times_a_tiny_model_on_gpu(precision, tiny_model):
  reason = tensorrt_runtime.unavailable_reason()
  if reason is not None:
    pytest.skip(f"TensorRT timing not run: {reason}")
  backend = backends.make_backend(backends.BackendConfig("tensorrt", precision=precision, runs=5))
  timing = backend.measure(tiny_model, (2, 8, 8, 3))
  assert 0 < timing.min_ms <= timing.median_ms and "TensorRT" in backend.device()
