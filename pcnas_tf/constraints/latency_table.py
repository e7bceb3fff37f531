"""The latency lookup table: measuring it (resumably), calibrating it, and its JSON file.

Building a table times, on one backend:
  * each (layer, op) as a tiny Keras model holding just that operator, at that layer's input shape
    (operators with identical shapes are timed once; a shape-keeping Identity costs nothing);
  * the fixed parts: the stem (with ProxylessNAS' fixed first operator) and the head;
  * `calibration_archs` random whole architectures (`model.build_model`),
then fits the per-op table to the whole-network latencies (`calibration.fit`). Both the measured and the
calibrated tables are kept.

Models are timed in groups of `GROUP`, interleaved and paired with one fixed reference network (the
space's `reference_arch`), by `Backend.measure_group`: on a shared machine that is what makes timings
repeat (see backends.py). With the default `ratio` estimator every entry is a ratio to the reference
times one unit, `reference_ms` (kept in the file): the median over the calibration networks of their
own fastest time / their ratio, so that ratios become milliseconds of this machine. All entries, and
whole networks timed later against the same reference, are in that one unit.

A single reference is not a steady yardstick on a shared VM: its speed relative to other networks
wanders by a few % from one group to the next (measured here: the same 16 networks timed in three
consecutive groups shifted by up to 2%, and calibration networks re-timed minutes after a build by
6-9%). So every group also times the same `YARDSTICK` whole networks (random, fixed by the seed), and
its ratios are divided by the group's yardstick factor: the geometric mean over those networks of
their ratio in the group / their geometric-mean ratio over the groups of whole networks
(`group_factor`). Every entry is then relative to the same set of networks, and so is a later timing
that includes them.

The file is the build's state: after every group it is rewritten atomically (temp file, then
a rename), so an interrupted build resumes with what it already measured.
"""

import hashlib
import json
import math
import os
from typing import Sequence

import numpy as np

from pcnas_tf import files
from pcnas_tf import errors
from pcnas_tf.constraints import backends as backends_lib
from pcnas_tf.constraints import timing
from pcnas_tf.constraints import calibration
from pcnas_tf.constraints import latency_probes

# /2: paired `ratio` timings, `reference_ms`, the calibration's per-op offset. /3: yardstick networks
# in every group. Older files are not read (their cache key differs too, so the search rebuilds them).
FORMAT = "pcnas_tf.latency_table/3"
# Models timed together, interleaved (bounded so that a few hundred MB of interpreters is the most held),
# the yardstick networks included.
GROUP = 16
YARDSTICK = 3
# A table built with different values here measures something else: loading it is an error.
IDENTITY_FIELDS = ("backend", "settings", "batch", "resolution", "channels", "num_classes", "space",
                   "width", "space_fingerprint")
# The cache also keys on where and how it was measured.
CACHE_FIELDS = IDENTITY_FIELDS + ("device", "tf_version", "calibration_archs", "seed")


UNCALIBRATED_NOTE = ("--calibration_archs=0 leaves the latency table uncalibrated: its predictions are "
                     "sums of one-layer timings, which bench.latency_model measured 16-19% off (MAPE) "
                     "on whole networks; the default, 40, calibrates it.")


class TableError(errors.UserError):
  """A latency table file that is unreadable, incomplete or built for something else."""


def make_metadata(space, config: backends_lib.BackendConfig, device: str, batch: int,
                  resolution: Sequence[int], channels: int = 3, num_classes: int = 10,
                  calibration_archs: int = 40, seed: int = 0) -> dict:
  """The metadata a table is identified by; validates the user-set values."""
  config.validate()
  resolution = _validate_shape(space, batch, resolution, channels, num_classes, calibration_archs)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {"backend": config.name, "settings": config.settings(), "batch": int(batch),
          "resolution": list(resolution), "channels": int(channels), "num_classes": int(num_classes),
          "space": space.name, "width": space.width, "space_fingerprint": space.fingerprint(),
          "device": device, "tf_version": tf.__version__, "calibration_archs": int(calibration_archs),
          "seed": int(seed), "warmup": config.warmup, "runs": config.runs}


def _validate_shape(space, batch, resolution, channels, num_classes, calibration_archs):
  if isinstance(resolution, int):
    resolution = (resolution, resolution)
  if int(batch) < 1:
    raise errors.UserError(f"Batch size {batch} must be >= 1.")
  if len(resolution) != 2 or min(resolution) < space.total_stride:
    raise errors.UserError(f"Resolution {tuple(resolution)} must be two sizes of at least "
                           f"{space.total_stride} (the space's total stride).")
  if channels < 1 or num_classes < 1 or calibration_archs < 0:
    raise errors.UserError(f"Channels {channels} and classes {num_classes} must be >= 1 and "
                           f"calibration architectures {calibration_archs} >= 0.")
  return tuple(int(r) for r in resolution)


def check_metadata(found: dict, expected: dict, source: str, fields=IDENTITY_FIELDS) -> None:
  """Raises a TableError naming every field of `fields` where `found` differs from `expected`."""
  differences = [f"{field} is {found.get(field)!r}, expected {expected.get(field)!r}"
                 for field in fields if found.get(field) != expected.get(field)]
  if differences:
    raise TableError(f"Latency table {source} was built for something else: {'; '.join(differences)}.")


# Tables ---------------------------------------------------------------------------------------------

class LatencyTable:
  """A finished table: per layer, per choice, the cost in ms, measured and calibrated.

  Attributes:
    metadata: see `make_metadata`.
    choices: per layer, the operator names (the order of the cost lists).
    measured_ops_ms, measured_base_ms: the raw per-op table; base = stem (+ first op) + head.
    ops_ms, base_ms: the calibrated table (equal to the measured one without calibration networks).
    calibration: the fit's scale, per-op offset, lambda and cross-validated error, and the networks
      it used.
    reference_arch, reference_ms: the network every timing was paired with, and its latency.
    yardstick: `archs`, the networks timed in every group, and `reference_ratios`, their ratios over
      the build (a later timing that includes them is put in the table's unit by `group_factor`).
  """

  def __init__(self, data: dict):
    self.data = data
    self.metadata = data["metadata"]
    self.choices = tuple(tuple(layer) for layer in data["choices"])
    self.measured_ops_ms = _nested(data["measured"]["ops_ms"])
    self.measured_base_ms = float(data["measured"]["base_ms"])
    self.ops_ms = _nested(data["calibrated"]["ops_ms"])
    self.base_ms = float(data["calibrated"]["base_ms"])
    self.calibration = data["calibrated"]
    self.reference_arch = data.get("reference_arch")
    reference_ms = data.get("reference_ms")
    self.reference_ms = None if reference_ms is None else float(reference_ms)
    self.yardstick = data.get("yardstick", {"archs": [], "reference_ratios": []})

  def costs(self, calibrated: bool = True) -> tuple[tuple[tuple[float, ...], ...], float]:
    """(ops_ms, base_ms) of the calibrated or the measured table."""
    return (self.ops_ms, self.base_ms) if calibrated else (self.measured_ops_ms, self.measured_base_ms)


def _nested(rows):
  return tuple(tuple(float(v) for v in row) for row in rows)


def load_table(path: str, expected: dict | None = None) -> LatencyTable:
  """Loads a finished table, checking it against `expected` metadata when given.

  Raises:
    TableError: the file is missing, corrupt or unfinished, or differs from `expected` (the message
      names each differing field).
  """
  data = _read(path)
  if not data.get("complete"):
    raise TableError(f"Latency table {path} is unfinished; run the build again to resume it.")
  if expected is not None:
    check_metadata(data["metadata"], expected, path)
  try:
    table = LatencyTable(data)
  except (KeyError, TypeError, ValueError) as error:
    raise TableError(f"Latency table {path} is corrupt: missing or malformed {error}.") from error
  if [len(c) for c in table.choices] != [len(o) for o in table.ops_ms]:
    raise TableError(f"Latency table {path} is corrupt: its cost lists do not match its choices.")
  return table


def _write(path: str, state: dict) -> None:
  files.make_dir(os.path.dirname(files.absolute(path)), "Latency table directory")
  files.write_json(path, state, indent=1)


def _read(path: str) -> dict:
  data = files.read_json(path, "latency table", TableError)
  found = data.get("format") if isinstance(data, dict) else None
  if isinstance(found, str) and found.startswith(FORMAT.split("/")[0] + "/") and found != FORMAT:
    raise TableError(f"Latency table {path} has the older format {found!r}, not {FORMAT!r}; delete it "
                     f"to rebuild.")
  if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(
      data.get("metadata"), dict) or not isinstance(data.get("measurements", {}), dict):
    raise TableError(f"Latency table {path} is corrupt: it is not a {FORMAT} file.")
  return data


# Building -------------------------------------------------------------------------------------------

def build_table(space, config: backends_lib.BackendConfig, batch: int, resolution, output: str,
                channels: int = 3, num_classes: int = 10, calibration_archs: int = 40, seed: int = 0,
                backend: backends_lib.Backend | None = None, progress: bool = True,
                reference=None, output_flag: str = "--output") -> LatencyTable:
  """Measures and calibrates a table into `output`, resuming from it if it holds a matching build.

  Args:
    space: the `SearchSpace`.
    config: the backend and its settings.
    batch, resolution, channels, num_classes: the input the networks are timed at.
    output: the JSON file, rewritten after every measurement.
    calibration_archs: random whole networks the table is fitted to (0: no calibration).
    seed: picks the calibration networks.
    backend: the timer (default: `make_backend(config)`); tests inject fakes.
    progress: show a tqdm progress bar.
    reference: the reference network as `backend.prepare_reference` returned it (default: prepared
      here). Timings against the same prepared reference share the table's unit (`unit_ms`).

  Raises:
    UserError: bad settings; `output` holds a table built for something else; backend unavailable.
  """
  backend = backend or backends_lib.make_backend(config)
  metadata = make_metadata(space, config, backend.device(), batch, resolution, channels, num_classes,
                           calibration_archs, seed)
  state = _start_or_resume(output, metadata, space, calibration_archs, seed)
  if not state.get("complete"):
    # Before the first timing: a table that cannot be saved would lose every group measured.
    files.check_writable_dir(os.path.dirname(files.absolute(output)), "Latency table directory",
                             output_flag)
    _measure_missing(state, space, backend, output, progress, reference)
    _finish(state, space)
    _write(output, state)
  return load_table(output, metadata)


def _start_or_resume(output, metadata, space, calibration_archs, seed) -> dict:
  if files.exists(output):
    state = _read(output)
    check_metadata(state["metadata"], metadata, output, CACHE_FIELDS)
    return state
  archs = latency_probes.random_archs(space, calibration_archs + YARDSTICK, seed)
  return {"format": FORMAT, "metadata": metadata, "complete": False, "measurements": {},
          "calibration_archs": archs[:calibration_archs], "group_of": {},
          "yardstick": {"archs": archs[calibration_archs:], "ratios": []}}


def _measure_missing(state, space, backend, output, progress, reference=None) -> None:
  import keras  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  batch = state["metadata"]["batch"]
  jobs = latency_probes.jobs(space, state["metadata"], state["calibration_archs"])
  todo = [job for job in jobs if job[0] not in state["measurements"]]
  if not todo:
    return
  image = (batch, *state["metadata"]["resolution"], state["metadata"]["channels"])
  if reference is None:
    reference = backend.prepare_reference(latency_probes.reference_model(space, state["metadata"]), image)
  yardstick = state["yardstick"]["archs"]
  with tqdm(total=len(jobs), initial=len(jobs) - len(todo), disable=not progress,
            desc=f"latency table ({state['metadata']['backend']})", unit="model") as bar:
    for group in chunks(todo, len(yardstick)):
      models = [(factory(), (batch, *shape)) for _, shape, factory in group]
      models += [(latency_probes.network_model(space, state["metadata"], arch), image) for arch in yardstick]
      timings = backend.measure_group(models, reference)
      index = len(state["yardstick"]["ratios"])
      for (key, _, _), measured in zip(group, timings):
        state["measurements"][key] = vars(measured)
        state["group_of"][key] = index
      state["yardstick"]["ratios"].append([t.ratio for t in timings[len(group):]])
      _write(output, state)
      keras.backend.clear_session()  # the models are throw-away; keep graph memory flat
      bar.update(len(group))


def chunks(items: Sequence, yardstick: int) -> list:
  """`items` split into the groups they are timed in: each leaves room for `yardstick` networks."""
  size = max(1, GROUP - yardstick)
  return [items[start:start + size] for start in range(0, len(items), size)]


def group_factor(ratios: Sequence[float], yardstick_ratios: Sequence[float]) -> float:
  """How much faster the reference ran in one group than in the build: the geometric mean over the
  yardstick networks of their ratio in that group / their ratio in the build's whole-network groups
  (`LatencyTable.yardstick["reference_ratios"]`; 1 without a yardstick)."""
  if not len(ratios):
    return 1.0
  return float(np.exp(np.mean(np.log(np.asarray(ratios, float) / np.asarray(yardstick_ratios, float)))))


def _yardstick_ratios(groups) -> list[float]:
  """Each yardstick network's geometric-mean ratio over `groups` (lists of ratios, one per network)."""
  return [float(r) for r in np.exp(np.mean(np.log(np.asarray(groups, float)), axis=0))] if groups else []


def _finish(state, space) -> None:
  """Turns the measurements into the measured and calibrated tables."""
  metadata = state["metadata"]
  yardstick = state["yardstick"]
  # The reference runs faster among one-operator models (their small footprint leaves it the caches)
  # than among whole networks: the yardstick is anchored on the groups that time whole networks, the
  # context of every later timing, so that `reference_ms` stays in this machine's milliseconds.
  whole = sorted({g for key, g in state["group_of"].items() if key.startswith("arch/")})
  yardstick["reference_ratios"] = _yardstick_ratios(
      [yardstick["ratios"][g] for g in whole] if whole else yardstick["ratios"])
  values, reference_ms = _values_ms(state)
  probes = latency_probes.op_probes(space, tuple(metadata["resolution"]))
  ops_ms = [[values[key] if factory is not None else 0.0 for key, _, factory in row] for row in probes]
  base_ms = values["stem"] + values["head"]
  archs = state["calibration_archs"]
  fit = calibration.fit([space.indices(space.parse_arch(a)) for a in archs],
                        [values[f"arch/{a}"] for a in archs], ops_ms, base_ms, stage_ids(space))
  state["choices"] = [list(layer.choices) for layer in space.layers]
  state["reference_arch"] = latency_probes.reference_arch(space)
  state["reference_ms"] = _finite_or_none(reference_ms)
  state["measured"] = {"ops_ms": ops_ms, "base_ms": base_ms}
  state["calibrated"] = {"ops_ms": [list(r) for r in fit.ops_ms], "base_ms": fit.base_ms,
                         "scale": fit.scale, "op_offset_ms": fit.op_offset_ms,
                         "ridge_lambda": _finite_or_none(fit.ridge_lambda),
                         "cv_rmse_ms": _finite_or_none(fit.cv_rmse_ms), "networks": len(archs),
                         "model": fit.model, "group_scales": fit.group_scales}
  state["complete"] = True


def _values_ms(state) -> tuple[dict, float]:
  """({model key: its latency in ms}, reference_ms) of a build's timings, each in the table's unit
  (divided by its group's yardstick factor); `state["yardstick"]["reference_ratios"]` must be set."""
  yardstick = state["yardstick"]
  factors = [group_factor(r, yardstick["reference_ratios"]) for r in yardstick["ratios"]]
  measured = {key: _divide_ratio(m, factors[state["group_of"][key]]) for key, m in
              state["measurements"].items()}
  reference_ms = _reference_ms(measured)
  estimator = state["metadata"]["settings"]["estimator"]
  values = {key: timing.Timing(**m).value(estimator, reference_ms) for key, m in measured.items()}
  return values, reference_ms


def calibration_networks(table: LatencyTable, space) -> list[dict]:
  """The whole networks a table was calibrated on: `arch` (compact string), `measured_ms` as the build
  timed it and `predicted_ms` by the calibrated table. The fit saw these networks, so they show how
  well it fits, not how it predicts others (`calibration["cv_rmse_ms"]` estimates that)."""
  values, _ = _values_ms(table.data)
  rows = []
  for arch in table.data.get("calibration_archs", []):
    path = space.indices(space.parse_arch(arch))
    predicted = table.base_ms + sum(table.ops_ms[layer][choice] for layer, choice in enumerate(path))
    rows.append({"arch": arch, "measured_ms": values[f"arch/{arch}"], "predicted_ms": predicted})
  return rows


def _divide_ratio(measured: dict, factor: float) -> dict:
  return {**measured, "ratio": measured["ratio"] / factor} if measured.get("ratio") else measured


def stage_ids(space) -> list[int]:
  """A stage index per layer: a stage starts where the stride is not 1 or the channels change."""
  ids, previous = [], None
  for layer in space.layers:
    if previous is None or layer.stride != 1 or layer.channels != previous.channels:
      ids.append(len(set(ids)))
    else:
      ids.append(ids[-1])
    previous = layer
  return ids


def _reference_ms(measured) -> float:
  """The reference's latency for this build: `unit_ms` over its whole networks (all models if none)."""
  networks = [m for key, m in measured.items() if key.startswith("arch/") and m.get("ratio")]
  return unit_ms(networks or list(measured.values()))


def unit_ms(timings) -> float:
  """The ms that turn ratios to the reference into latencies, from one session's timings (dicts).

  The median over the networks of their own fastest time / their ratio. Each network's own minimum
  over its spread-out rounds repeated within 1% between builds here, while the reference's own
  minimum moved by 30% with where its interpreters were placed in memory; the median over many
  networks is the steadier anchor for absolute milliseconds. Timings of another session (other
  interpreters of the reference) need their own unit, found the same way.
  """
  values = [m["min_ms"] / m["ratio"] for m in timings if m.get("ratio")]
  return float(np.median(values)) if values else float("nan")


def _finite_or_none(value):
  return value if math.isfinite(value) else None  # JSON has no inf or NaN


def cache_key(metadata: dict) -> str:
  blob = json.dumps({"format": FORMAT, **{field: metadata[field] for field in CACHE_FIELDS}},
                    sort_keys=True).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def get_or_build_table(cache_dir: str, space, backend: str | backends_lib.BackendConfig, batch: int,
                       resolution, channels: int = 3, num_classes: int = 10,
                       calibration_archs: int = 40, seed: int = 0, progress: bool = True,
                       timer: backends_lib.Backend | None = None) -> LatencyTable:
  """The table for these settings on this device: reused from `cache_dir`, else built (or resumed) there.

  The cache is keyed by `CACHE_FIELDS` (space fingerprint, backend and its settings, device, TF version,
  batch, resolution, ...), so a change to any of them builds a new table.
  """
  config = backend if isinstance(backend, backends_lib.BackendConfig) else backends_lib.BackendConfig(
      name=backend)
  timer = timer or backends_lib.make_backend(config)
  metadata = make_metadata(space, config, timer.device(), batch, resolution, channels, num_classes,
                           calibration_archs, seed)
  path = os.path.join(cache_dir, f"{space.name}_{config.name}_{cache_key(metadata)}.json")
  return build_table(space, config, batch, resolution, path, channels, num_classes, calibration_archs,
                     seed, timer, progress, output_flag="--latency_cache_dir")
