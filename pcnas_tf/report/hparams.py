"""Every scored candidate and every retrained network as a session of TensorBoard's HParams dashboard.

keras-tuner shows its trials this way; here a trial is a candidate partial model of one interval: its
operator per decided mixop, the interval, whether it was kept in the pool, and as metrics its
potential and the mean predicted cost, params and FLOPs of the completions its potential averaged
over. A retrained pool member adds its test top-1 and measured latency. Mixops and intervals are
numbered from 1, as the console and the pictures count them.

Under the search's `tensorboard/` directory (`tensorboard --logdir <work_dir>/tensorboard`):

  tensorboard/                                the experiment: every hparam and metric, described
  tensorboard/candidates/mixop_03/012/        one session per scored candidate (here: interval 3, `012`)
  tensorboard/retrained/rank_0_01221020/      one session per retrained pool member

Writing a session replaces its directory, so a resumed run that writes it again leaves it once.
"""

import math
import os

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from pcnas_tf import files
from pcnas_tf.space import search_space as space_lib

CANDIDATE, RETRAINED = "candidate", "retrained"
KIND, INTERVAL, KEPT, ARCH = "kind", "interval", "kept", "arch"
POTENTIAL, PARAMS, FLOPS = "potential", "params", "flops"
TEST_TOP1, MEASURED_LATENCY = "test_top1", "measured_latency_ms"
_RETRAINED_METRICS = (POTENTIAL, TEST_TOP1, MEASURED_LATENCY, PARAMS, FLOPS)


def mixop_hparam(index: int) -> str:
  """The hparam of mixop `index` (0-based): `mixop_01` for the first."""
  return f"mixop_{index + 1:02d}"


def candidate_session(interval: int, partial) -> str:
  """The session (run directory) of a candidate of `interval` (0-based) with choices `partial`."""
  return f"candidates/mixop_{interval + 1:02d}/{space_lib.path_to_string(partial)}"


def retrained_session(rank: int, arch_string: str) -> str:
  return f"{RETRAINED}/rank_{rank}_{arch_string}"


def write_experiment(log_dir: str, space, prediction_key: str, unit: str) -> None:
  """The experiment's hparams and metrics, with their domains and descriptions, into `log_dir`."""
  hparams = [hp.HParam(KIND, hp.Discrete([CANDIDATE, RETRAINED]), description="candidate or retrained"),
             hp.HParam(INTERVAL, hp.IntInterval(1, space.num_layers), description="the mixop decided"),
             hp.HParam(KEPT, hp.Discrete([False, True]), description="kept in the pool"),
             hp.HParam(ARCH, description="choice per decided mixop (compact string)")]
  hparams += [hp.HParam(mixop_hparam(index), hp.Discrete(list(layer.choices)))
              for index, layer in enumerate(space.layers)]
  metrics = [hp.Metric(POTENTIAL, description="mean validation accuracy of the sampled completions"),
             hp.Metric(prediction_key, description=f"predicted cost ({unit}); candidates: the completions' "
                                                   f"mean"),
             hp.Metric(PARAMS, description="parameters; candidates: completions' mean"),
             hp.Metric(FLOPS, description="multiply-accumulates; candidates: completions' mean"),
             hp.Metric(TEST_TOP1, description="retrained: test top-1"),
             hp.Metric(MEASURED_LATENCY, description="retrained: the exported LiteRT model's latency, ms")]
  with tf.summary.create_file_writer(log_dir).as_default():
    hp.hparams_config(hparams=hparams, metrics=metrics)


def write_candidates(log_dir: str, space, record: dict) -> int:
  """One session per candidate of an interval's record (`PCNASOracle.history`); returns the count.

  `record["candidate_costs"]`, when present, holds each candidate's mean costs (`mean_costs`).
  """
  interval, kept = record["interval"], {tuple(member) for member in record["pool"]}
  costs = record.get("candidate_costs") or [{}] * len(record["candidates"])
  for candidate, potential, cost in zip(record["candidates"], record["potentials"], costs):
    values = {KIND: CANDIDATE, KEPT: tuple(candidate) in kept}
    _write_session(log_dir, candidate_session(interval, candidate), space, candidate, interval + 1,
                   values, {POTENTIAL: potential, **cost})
  return len(record["candidates"])


def write_retrained(log_dir: str, space, members) -> None:
  """One session per retrained pool member: dicts with `rank`, `arch` (op names) and the metrics
  `potential`, `test_top1`, `measured_latency_ms` (None if not measured), the predicted cost
  (`predicted_latency_ms`, ...), `params` and `flops`."""
  for member in members:
    metrics = {name: value for name, value in member.items()
               if name in _RETRAINED_METRICS or name.startswith("predicted_")}
    session = retrained_session(member["rank"], space.arch_to_string(member["arch"]))
    _write_session(log_dir, session, space, space.indices(member["arch"]), space.num_layers,
                   {KIND: RETRAINED, KEPT: True}, metrics)


def _write_session(log_dir, session, space, path, interval, values, metrics):
  directory = os.path.join(log_dir, session)
  files.remove(directory)
  values = {**values, INTERVAL: interval, ARCH: space_lib.path_to_string(path),
            **{mixop_hparam(index): space.layers[index].choices[int(choice)]
               for index, choice in enumerate(path)}}
  writer = tf.summary.create_file_writer(directory)
  with writer.as_default(step=interval):
    hp.hparams(values, trial_id=session)
    for name, value in metrics.items():
      if value is not None and math.isfinite(value):  # a candidate without feasible completions: NaN
        tf.summary.scalar(name, value)
  writer.close()
