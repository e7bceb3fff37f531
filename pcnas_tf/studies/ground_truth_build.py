"""Builds a ground-truth table: networks of the macro space drawn uniformly, each trained alone under one
`Schedule`, a sample with a second seed first (the noise ceiling). The JSON file is the build's state,
rewritten atomically after every training, so a build stopped anywhere resumes where it was; several
processes can build one table side by side (`shard` of `shards`), merging their saves under a lock."""

import contextlib
import dataclasses
import fcntl
import json
import os
from typing import Callable, Sequence

import numpy as np

from pcnas_tf import files
from pcnas_tf import provenance
from pcnas_tf.data import data_config
from pcnas_tf import errors
from pcnas_tf.space import nasbench_macro
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.studies import ground_truth
from pcnas_tf.training import optimizer_config
from pcnas_tf.training import workdir

# A table built with other values of these measures something else: resuming into it is refused.
IDENTITY_FIELDS = ("space", "width", "space_fingerprint", "data", "schedule", "draw_seed")



@dataclasses.dataclass(frozen=True)
class Schedule:
  """How every network of a table is trained alone (`train_config.TrainConfig`'s fields of the same names;
  the optimizer's four stay flat here, as the committed tables record them).

  No MixUp, label smoothing or SE: a plain, short recipe, the same for every network, so that the
  ranking reflects the architecture.
  """
  epochs: int = 1
  steps_per_epoch: int = 900
  batch_size: int = 128
  learning_rate: float = 0.1
  final_learning_rate: float = 1e-3
  momentum: float = 0.9
  weight_decay: float = 1e-4
  eval_batch_size: int = 500

  @property
  def optimizer(self) -> optimizer_config.OptimizerConfig:
    return optimizer_config.OptimizerConfig(self.learning_rate, self.final_learning_rate, self.momentum,
                                            self.weight_decay)

  def validate(self):
    self.optimizer.validate()
    errors.check_at_least(self.epochs, 1, "Epochs (--epochs)")
    errors.check_at_least(self.steps_per_epoch, 1, "Steps per epoch (--steps_per_epoch)")
    errors.check_at_least(self.batch_size, 1, "Batch size (--batch_size)")
    errors.check_at_least(self.eval_batch_size, 1, "Evaluation batch size (--eval_batch_size)")
    return self


@dataclasses.dataclass(frozen=True)
class BuildConfig:
  """What a table holds and how it is trained.

  Attributes:
    width: the macro space's width multiplier.
    data: the dataset, resolution and validation carve-out (the search's; its seed fixes the split).
    schedule: the stand-alone training recipe.
    networks: distinct networks drawn uniformly (paths drawn uniformly, counted once per network).
    second_seed_every: every k-th drawn network is also trained with seed 1 (0: none).
    draw_seed: seeds the draw.
  """
  width: float = 0.25
  data: data_config.DataConfig = data_config.DataConfig(resolution=28, validation=5000, deterministic=True)
  schedule: Schedule = Schedule()
  networks: int = 200
  second_seed_every: int = 4
  draw_seed: int = 0

  def validate(self):
    self.schedule.validate()
    errors.check_at_least(self.networks, 0, "Networks (--networks)")
    errors.check_at_least(self.second_seed_every, 0, "Second seed every (--second_seed_every)")
    if not self.width > 0:
      raise errors.UserError(f"Width {self.width} must be > 0.")
    return self

  @property
  def space(self):
    return space_lib.macro_space(self.width)


def config_of(state: dict, networks: int = 0) -> BuildConfig:
  """The BuildConfig a table was built with (from its JSON state), to add networks to it on demand.

  `networks`: how many drawn networks the config plans (0: none beyond those the table holds)."""
  data = data_config.DataConfig(**{**state["data"], "deterministic": True})
  return BuildConfig(width=state["width"], data=data, schedule=Schedule(**state["schedule"]),
                     networks=networks, second_seed_every=0, draw_seed=state["draw_seed"])


def draw_networks(space, count: int, seed: int) -> list[str]:
  """`count` distinct networks (canonical compact strings), from paths drawn uniformly."""
  rng, drawn = np.random.default_rng(seed), []
  total = len({nasbench_macro.canonical_key(space.arch_to_string(space.arch_from_indices(p)))
               for p in np.ndindex(*[len(l.choices) for l in space.layers])})
  while len(drawn) < min(count, total):
    path = [int(rng.integers(len(layer.choices))) for layer in space.layers]
    key = nasbench_macro.canonical_key("".join(map(str, path)))
    if key not in drawn:
      drawn.append(key)
  return drawn


def _identity(config: BuildConfig) -> dict:
  data = dataclasses.asdict(config.data)
  for machine_local in data_config.MACHINE_LOCAL:
    data.pop(machine_local)
  return {"space": "macro", "width": config.width, "space_fingerprint": config.space.fingerprint(),
          "data": data, "schedule": dataclasses.asdict(config.schedule), "draw_seed": config.draw_seed}


def start_or_resume(path: str, config: BuildConfig) -> dict:
  """The table's state: read from `path` when it exists (refused, naming the field, if it was built
  with another schedule, space, split or draw), else a new plan."""
  identity = json.loads(json.dumps(_identity(config)))
  if os.path.exists(path):
    state = ground_truth.read_state(path)
    differences = workdir.config_differences({f: state.get(f) for f in IDENTITY_FIELDS}, identity)
    if differences:
      raise ground_truth.GroundTruthError(f"Ground-truth table {path} was built with something else "
                             f"({'; '.join(differences[:3])}); use another --output.")
    planned = draw_networks(config.space, config.networks, config.draw_seed)
    _plan(state, planned, config.second_seed_every)
    return state
  state = {"format": ground_truth.FORMAT, **identity, "versions": _versions(), "order": [], "networks": {}}
  _plan(state, draw_networks(config.space, config.networks, config.draw_seed), config.second_seed_every)
  return state


def _versions() -> dict:
  return provenance.versions()


def _plan(state: dict, drawn: Sequence[str], second_seed_every: int) -> None:
  """Adds the drawn networks (and their seeds) to the plan; networks already planned keep theirs.

  The networks with two seeds come first, so that the noise ceiling is known early in a build (a
  schedule too short for it is best found before the rest is trained)."""
  paired = [key for index, key in enumerate(drawn) if second_seed_every and index % second_seed_every == 0]
  for key in paired:
    _add(state, key, [0, 1], "drawn")
  for key in drawn:
    _add(state, key, [0], "drawn")


def _add(state: dict, key: str, seeds: Sequence[int], why: str) -> None:
  network = state["networks"].setdefault(key, {"why": why, "planned_seeds": [], "seeds": {}})
  for seed in seeds:
    if seed not in network["planned_seeds"]:
      network["planned_seeds"].append(seed)
      state["order"].append([key, seed])


def pending(state: dict) -> list[tuple[str, int]]:
  """(network, seed) trainings planned and not yet done, in plan order."""
  return [(key, seed) for key, seed in state["order"] if str(seed) not in state["networks"][key]["seeds"]]


def add_networks(path: str, config: BuildConfig, archs: Sequence[str], train: Callable, why="added",
                 progress=True) -> dict:
  """Trains `archs` (compact strings, any path of a network) on demand and adds them; idempotent:
  a network already trained is not trained again. Returns the state."""
  _check_writable(path)
  with _locked(path):
    state = start_or_resume(path, config)
    for arch in archs:
      _add(state, nasbench_macro.canonical_key(arch), [0], why)
    files.write_json(path, state)  # atomic: temp file, fsync, rename
  added = {nasbench_macro.canonical_key(arch) for arch in archs}
  return _train_pending(path, config, state, train, progress, only=added)


def build(path: str, config: BuildConfig, train: Callable, progress=True, limit: int | None = None,
          on_network: Callable | None = None, shard: int = 0, shards: int = 1) -> dict:
  """Builds (or resumes) the table at `path`; `train(config, key, seed)` trains one network and
  returns its figures. Saves after every training. `limit`: stop after this many trainings.

  `shard` of `shards`: this process trains the planned trainings whose place in the plan is `shard`
  modulo `shards`, so several processes (one per core) build one table side by side; each saves under
  a lock, merging into what the others saved."""
  config.validate()
  if not 0 <= shard < shards:
    raise ground_truth.GroundTruthError(f"Shard {shard} of {shards} does not exist; use 0 <= shard < shards.")
  _check_writable(path)
  with _locked(path):
    state = start_or_resume(path, config)
    files.write_json(path, state)  # atomic: temp file, fsync, rename
  return _train_pending(path, config, state, train, progress, limit, on_network, shard, shards)


@contextlib.contextmanager
def _locked(path: str):
  """An exclusive lock beside the table, held while it is read and rewritten. fcntl (POSIX), not a
  library: the lock lives only as long as the process, so a killed build never leaves it behind. It
  needs a local file, so the table is local too (`_check_writable`); the shards of one build share
  one machine's disk."""
  with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _check_writable(path: str) -> None:
  if not files.is_local(path):
    raise ground_truth.GroundTruthError(
        f"Ground-truth table {path!r} is not on a local file system; its shards lock it with flock, "
        f"which needs one: give --output a local path and copy the table afterwards.")
  directory = os.path.dirname(os.path.abspath(path))
  files.check_writable_dir(directory, "Ground-truth table directory", "--output")
  files.make_dir(directory, "Ground-truth table directory")


def _train_pending(path, config, state, train, progress, limit=None, on_network=None, shard=0,
                   shards=1, only=None) -> dict:
  """Trains this shard's pending trainings (of the networks in `only`, if given: an on-demand addition
  to an unfinished table trains what was added, not the rest of the plan)."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  mine = {tuple(item) for i, item in enumerate(state["order"]) if i % shards == shard}
  todo = [item for item in pending(state) if item in mine and (only is None or item[0] in only)][:limit]
  with tqdm(total=len(todo), disable=not progress, desc="ground truth", unit="training") as bar:
    for key, seed in todo:
      figures = train(config, key, seed)
      with _locked(path):
        state = start_or_resume(path, config)  # with what other shards saved meanwhile
        network = state["networks"][key]
        for field in ("flops", "params"):
          network[field] = figures.pop(field)
        network["seeds"][str(seed)] = figures
        files.write_json(path, state)  # atomic: temp file, fsync, rename
      if on_network is not None:
        on_network(state, key, seed)
      bar.update(1)
  return state


def train_config(config: BuildConfig, key: str, seed: int):
  """The `train_config.TrainConfig` of one network of the table at one seed."""
  from pcnas_tf.training import train_config as train_config_lib  # pylint: disable=g-import-not-at-top
  space = config.space
  schedule = config.schedule
  return train_config_lib.TrainConfig(
      space=space, arch=space.arch_from_indices([int(c) for c in key]), se=False,
      epochs=schedule.epochs, steps_per_epoch=schedule.steps_per_epoch,
      batch_size=schedule.batch_size, optimizer=schedule.optimizer, mixup=0.0, label_smoothing=0.0,
      eval_batch_size=schedule.eval_batch_size, strategy="one_device", seed=seed, order_seed=seed,
      data=config.data)


def train_alone(work_root: str) -> Callable:
  """A `train` for `build`: trains with `standalone.run_training` in `work_root/<network>_s<seed>` (resumable there
  by its checkpoints), keeps the figures, and removes the directory."""
  def train(config: BuildConfig, key: str, seed: int) -> dict:
    from pcnas_tf.training import standalone as train_lib  # pylint: disable=g-import-not-at-top
    work_dir = os.path.join(work_root, f"{key}_s{seed}")
    result = train_lib.run_training(train_config(config, key, seed), work_dir, progress=False)
    files.remove(work_dir)
    return {"test_top1": result["top1"], "validation_top1": result["log"][-1]["validation_top1"],
            "wall_s": result["wall_time_s"], "flops": result["flops"], "params": result["params"]}
  return train


SCRATCH_DIR = "ground_truth_scratch"  # in a study's work directory: networks a table lacks train here


def entries(path: str, paths: Sequence[Sequence[int]], work_root: str, train: Callable | None = None,
            why: str = "asked by a study", progress=True) -> list:
  """The table's `ground_truth.Entry` of each path; networks it lacks are first trained alone with its
  schedule and added (`add_networks`; `train`: `train_alone(work_root)` unless given)."""
  state = ground_truth.read_state(path)
  keys = ["".join(map(str, p)) for p in paths]
  add_networks(path, config_of(state), keys, train or train_alone(work_root), why, progress)
  truth = ground_truth.load(path)
  return [truth.entry(p) for p in paths]


def check_matches(path: str, search) -> None:
  """Raises `UserError` unless the table at `path` was built on the search config's data and width
  in the macro space, so that its accuracies are the ground truth of what the search ranks."""
  state = ground_truth.read_state(path)
  data = dataclasses.asdict(search.data)
  wrong = [f"{field} {data[field]!r} (table: {state['data'][field]!r})" for field in state["data"]
           if field in data and field != "deterministic" and data[field] != state["data"][field]]
  if search.space != "macro" or search.width != state["width"]:
    wrong.insert(0, f"space {search.space} width {search.width} (table: macro width {state['width']})")
  if wrong:
    raise errors.UserError(f"The search does not match ground-truth table {path}: {'; '.join(wrong)}.")


@dataclasses.dataclass(frozen=True)
class LatencySettings:
  """How a table's networks are timed: LiteRT (one thread) at `batch`, the minimum of `runs` calls; the
  prediction is the searches' latency table for the same batch (`calibration_archs`, `seed`, cache)."""
  batch: int = 16
  runs: int = 40
  calibration_archs: int = 20
  seed: int = 0
  cache_dir: str = "~/.cache/pcnas_tf/latency"


def add_latencies(path: str, settings: LatencySettings = LatencySettings(), progress=True) -> dict:
  """Adds `predicted_latency_ms` and `measured_latency_ms` to every trained network of the table that
  lacks them, saving after each (resumable). Times on this machine: run it with nothing else running.

  A table records the latency settings and device once; networks timed under others are refused."""
  import keras  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  from pcnas_tf.constraints import backends  # pylint: disable=g-import-not-at-top
  from pcnas_tf.constraints import constraint as constraint_lib  # pylint: disable=g-import-not-at-top
  from pcnas_tf.constraints import latency_table  # pylint: disable=g-import-not-at-top
  from pcnas_tf.nn import model as model_lib  # pylint: disable=g-import-not-at-top
  state = ground_truth.read_state(path)
  space = space_lib.macro_space(state["width"])
  resolution, channels = state["data"]["resolution"], state["data"]["channels"]
  timer = backends.make_backend(backends.BackendConfig(name="tflite", threads=1, runs=settings.runs))
  table = latency_table.get_or_build_table(
      os.path.expanduser(settings.cache_dir), space, "tflite", settings.batch, resolution, channels,
      10, settings.calibration_archs, settings.seed, progress)
  recorded = {"backend": "tflite", "threads": 1, "batch": settings.batch, "statistic": f"min of {settings.runs}",
              "device": timer.device(), "latency_table": table.metadata.get("device")}
  if state.get("latency", recorded) != recorded:
    raise ground_truth.GroundTruthError(f"Ground-truth table {path} was timed with {state['latency']}, "
                                        f"not {recorded}; time it on that machine, or into a copy.")
  todo = [key for key, network in state["networks"].items()
          if network["seeds"] and "measured_latency_ms" not in network]
  shape = (settings.batch, resolution, resolution, channels)
  for key in tqdm(todo, disable=not progress, desc="latency", unit="network"):
    arch = space.arch_from_indices([int(c) for c in key])
    model = model_lib.build_model(arch, space, shape[1:], 10)
    measured = timer.measure(model, shape).min_ms
    predicted = constraint_lib.predict(arch, table)
    keras.backend.clear_session()
    with _locked(path):
      state = ground_truth.read_state(path)
      state["latency"] = recorded
      state["networks"][key].update(predicted_latency_ms=predicted, measured_latency_ms=measured)
      files.write_json(path, state)  # atomic: temp file, fsync, rename
  return ground_truth.read_state(path)
