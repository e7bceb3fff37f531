"""Timing primitives shared by every backend: a `Timing`, timed calls, and interleaved paired rounds
(the protocol is described in `backends.py`)."""

import dataclasses
import time
from typing import Callable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Timing:
  """One model's timing in milliseconds; `spread_ms` is the 10th-to-90th percentile range.

  `ratio` (median of model / reference over paired rounds) and `reference_ms` (the reference's minimum
  in those rounds) are set by `measure_group` only.
  """
  min_ms: float
  median_ms: float
  spread_ms: float
  runs: int
  ratio: float | None = None
  reference_ms: float | None = None

  @classmethod
  def from_samples(cls, samples_ms: Sequence[float], **paired) -> "Timing":
    low, median, high = np.percentile(samples_ms, [10, 50, 90])
    return cls(float(np.min(samples_ms)), float(median), float(high - low), len(samples_ms), **paired)

  def value(self, estimator: str, reference_ms: float | None = None) -> float:
    """The estimate in ms; `ratio` scales by `reference_ms` (default: this timing's own)."""
    if estimator == "ratio":
      if self.ratio is None:
        raise ValueError("This timing was not paired with a reference; use measure_group.")
      return self.ratio * (self.reference_ms if reference_ms is None else reference_ms)
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


def time_interleaved(calls: Sequence, reference, warmup: int, rounds: int, repeats: int = 2,
                     clock: Callable[[], float] = time.perf_counter, seed: int = 0) -> list[Timing]:
  """Times `calls` interleaved and paired with `reference` (see the module docstring).

  Each round visits every call once, in a fresh random order; a visit times the call `repeats` times
  and then the reference `repeats` times, keeping the fastest of each. Returns one Timing per call whose
  `ratio` is the median over rounds of call / reference and `reference_ms` the reference's minimum.

  A call (and the reference) may also be a list of calls, instances of the same model: round r uses
  instance r % len, so the median also spans the instances.
  """
  as_list = lambda call: list(call) if isinstance(call, (list, tuple)) else [call]
  calls, reference = [as_list(c) for c in calls], as_list(reference)
  def best_of(call):
    best = float("inf")
    for _ in range(repeats):
      start = clock()
      call()
      best = min(best, clock() - start)
    return best * 1e3

  for instances in [reference, *calls]:
    for call in instances:
      for _ in range(warmup):
        call()
  samples = np.zeros((rounds, len(calls)))
  references = np.zeros((rounds, len(calls)))
  rng = np.random.default_rng(seed)
  visits = 0
  for round_ in range(rounds):
    for index in rng.permutation(len(calls)):
      samples[round_, index] = best_of(calls[index][round_ % len(calls[index])])
      references[round_, index] = best_of(reference[visits % len(reference)])
      visits += 1
  reference_ms = float(np.min(references))
  ratios = np.median(samples / np.maximum(references, 1e-9), axis=0)
  return [Timing.from_samples(samples[:, i], ratio=float(ratios[i]), reference_ms=reference_ms)
          for i in range(len(calls))]


def random_input(input_shape) -> np.ndarray:
  """The fixed random float32 input every backend times a model on."""
  return np.random.default_rng(0).standard_normal(tuple(input_shape)).astype(np.float32)
