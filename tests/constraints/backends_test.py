"""Tests of the timing loop, the backends on a tiny model, and TensorRT's behaviour without a GPU."""

import pytest

from pcnas_tf import errors
from pcnas_tf.constraints import backends
from pcnas_tf.constraints import timing
from pcnas_tf.constraints import tensorrt


def test_time_calls_warms_up_then_records_min_median_spread():
  calls = []
  clock = iter([0.0, 0.004, 0.0, 0.001, 0.0, 0.002]).__next__  # three timed runs: 4, 1, 2 ms
  timed = timing.time_calls(lambda: calls.append(1), warmup=2, runs=3, clock=clock)
  assert len(calls) == 5
  assert timed.min_ms == pytest.approx(1.0) and timed.median_ms == pytest.approx(2.0)
  assert timed.runs == 3 and timed.spread_ms == pytest.approx(2.4)  # 90th - 10th percentile


class SlowingClock:
  """A fake clock and calls: call i takes cost[i] ms times a machine speed that worsens every call."""

  def __init__(self, costs):
    self.now, self.slowdown, self.costs = 0.0, 1.0, costs

  def __call__(self):
    return self.now

  def call(self, index):
    def run():
      self.now += self.costs[index] * self.slowdown / 1e3
      self.slowdown *= 1.01
    return run


def test_interleaved_ratio_cancels_a_drifting_machine_speed():
  clock = SlowingClock([2.0, 1.0, 4.0])  # the last one is the reference
  timings = timing.time_interleaved([clock.call(0), clock.call(1)], clock.call(2), warmup=1,
                                      rounds=20, repeats=2, clock=clock)
  # Each visit times the model and then the reference, so the drift between them is only 2%.
  assert [t.ratio for t in timings] == pytest.approx([0.5, 0.25], rel=0.03)
  # Three warm-up calls and two model calls come first: the fastest reference is the first one timed.
  assert timings[0].reference_ms == pytest.approx(4.0 * 1.01 ** 5, rel=1e-6)
  assert timings[1].value("ratio", reference_ms=4.0) == pytest.approx(1.0, rel=0.03)
  assert timings[0].runs == 20 and timings[0].min_ms < timings[0].median_ms


def test_ratio_of_an_unpaired_timing_is_an_error():
  with pytest.raises(ValueError, match="not paired"):
    timing.Timing(1.0, 1.0, 0.0, 1).value("ratio")


@pytest.mark.parametrize("config, message", [
    (backends.BackendConfig("tpu"), "Unknown latency backend 'tpu'"),
    (backends.BackendConfig(threads=0), "Threads 0"),
    (backends.BackendConfig(repeats=0), "repeats 0"),
    (backends.BackendConfig(estimator="mean"), "Unknown estimator 'mean'"),
    (backends.BackendConfig(precision="int8"), "Unknown precision 'int8'")])
def test_bad_settings_are_user_errors(config, message):
  with pytest.raises(errors.UserError, match=message):
    backends.make_backend(config)


def test_settings_identify_only_what_changes_the_measurement():
  assert backends.BackendConfig("tflite", threads=2).settings() == {"estimator": "ratio", "threads": 2}
  assert backends.BackendConfig("tf", xla=True, runs=9).settings() == {"estimator": "ratio", "xla": True}


@pytest.fixture(scope="module")
def tiny_model():
  import keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((8, 8, 3))
  return keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))


@pytest.mark.parametrize("config", [backends.BackendConfig("tflite", runs=5),
                                    backends.BackendConfig("tf", runs=5)])
def test_cpu_backends_time_a_tiny_model(config, tiny_model):
  timed = backends.make_backend(config).measure(tiny_model, (2, 8, 8, 3))
  assert 0 < timed.min_ms <= timed.median_ms and timed.runs == 5


@pytest.mark.parametrize("name", ["tflite", "tf"])
def test_cpu_backends_time_a_group_against_a_reference(name, tiny_model):
  backend = backends.make_backend(backends.BackendConfig(name, runs=3, warmup=1))
  reference = backend.prepare_reference(tiny_model, (1, 8, 8, 3))
  timings = backend.measure_group([(tiny_model, (1, 8, 8, 3)), (tiny_model, (4, 8, 8, 3))], reference)
  assert len(timings) == 2 and all(t.ratio > 0 and t.reference_ms > 0 for t in timings)


def test_tflite_graph_is_frozen_and_fused(tiny_model):
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_content=backends.to_tflite(tiny_model, (1, 8, 8, 3)))
  names = {op["op_name"] for op in interpreter._get_ops_details()}  # pylint: disable=protected-access
  assert names == {"CONV_2D"}  # no VAR_HANDLE / READ_VARIABLE from the SavedModel route


def test_tensorrt_without_gpu_or_package_is_a_clear_user_error():
  reason = tensorrt.unavailable_reason()
  if reason is None:
    pytest.skip("TensorRT is usable on this machine; the no-GPU error path cannot be exercised")
  with pytest.raises(errors.UserError, match="Cannot time with TensorRT: the tensorrt backend needs"):
    backends.make_backend(backends.BackendConfig("tensorrt"))
  assert backends.default_backend_name() == "tflite"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_times_a_tiny_model_on_gpu(precision, tiny_model):
  reason = tensorrt.unavailable_reason()
  if reason is not None:
    pytest.skip(f"TensorRT timing not run: {reason}")
  backend = backends.make_backend(backends.BackendConfig("tensorrt", precision=precision, runs=5))
  timed = backend.measure(tiny_model, (2, 8, 8, 3))
  assert 0 < timed.min_ms <= timed.median_ms and "TensorRT" in backend.device()


def test_tensorrt_group_is_each_models_minimum_over_the_references():
  class FakeRuntime:  # GPU time in ms is the "model" itself
    def measure(self, model, input_shape, warmup, runs):
      return timing.Timing(model, model * 1.2, 0.1, runs)

  backend = object.__new__(backends.TensorRTBackend)  # without a GPU, __init__ refuses
  backend.config, backend._runtime = backends.BackendConfig("tensorrt", runs=3), FakeRuntime()  # pylint: disable=protected-access
  reference = backend.prepare_reference(4.0, (1, 8, 8, 3))
  timings = backend.measure_group([(2.0, (1, 8, 8, 3)), (6.0, (1, 8, 8, 3))], reference)
  assert [t.ratio for t in timings] == [0.5, 1.5] and timings[0].value("ratio") == 2.0


def test_interleaved_rounds_rotate_through_instances():
  clock = SlowingClock([1.0, 3.0, 2.0])
  clock.call = lambda index, c=clock: (lambda: setattr(c, "now", c.now + c.costs[index] / 1e3))
  # Two instances of one model, one 3x slower: the median over rounds sees both.
  timings = timing.time_interleaved([[clock.call(0), clock.call(1)]], clock.call(2), warmup=0,
                                      rounds=3, repeats=1, clock=clock)
  assert timings[0].min_ms == pytest.approx(1.0) and timings[0].median_ms == pytest.approx(1.0)
  assert timings[0].ratio == pytest.approx(0.5)  # median of 0.5, 1.5, 0.5
  assert timings[0].spread_ms > 1.0  # the slow instance was timed in round 2
