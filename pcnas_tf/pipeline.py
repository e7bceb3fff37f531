"""The user's whole job in one call: search, retrain the chosen network, test it, export it, time it.

Each stage is the library call its own binary makes (`search_lib.run_search`, `train_lib.run_training`,
`export_lib.run_export`), in sub-directories of one work directory:

  <work_dir>/                 the search (search_result.json, ...), as `search_main` writes it
  <work_dir>/retrain/         the chosen network trained from scratch (model.keras, train_result.json)
  <work_dir>/export/          SavedModel, LiteRT and ONNX files, checked against the Keras model
  <work_dir>/retrain_pool/<rank>/   with `pool_members` > 1: the next pool members, each retrained
                              the same way and exported to LiteRT (export/) to be timed
  <work_dir>/pipeline_result.json
  <work_dir>/report.html      rewritten at the end of every stage (`report.page`)

A finished stage is not run again, so the same command resumes (or returns at once). The exported LiteRT
model is timed the way the latency table was measured (the table's batch, LiteRT with XNNPACK, one
thread, the minimum of `latency_runs` runs) and compared with the budget the search used. Every
retrained network is a session of TensorBoard's HParams dashboard (test top-1, measured latency) beside
the search's candidates (`report.hparams`).
"""

import dataclasses
import json
import os
import time

from pcnas_tf import files

from pcnas_tf.training import workdir
from pcnas_tf import errors
from pcnas_tf.data import data_config
from pcnas_tf.report import figures
from pcnas_tf.report import hparams
from pcnas_tf.report import page
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.searcher import search_config
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import standalone as train_lib
from pcnas_tf.training import from_search
from pcnas_tf.training import train_config
from pcnas_tf.training import optimizer_config

RESULT_FILE = "pipeline_result.json"
RETRAIN_DIR = "retrain"
POOL_DIR = "retrain_pool"
EXPORT_DIR = "export"
EXPORT_FORMATS = ("saved_model", "tflite", "onnx")
TIMED_FORMATS = ("tflite",)  # the other pool members: exported only to be timed


@dataclasses.dataclass(frozen=True)
class Retraining:
  """How the chosen network is retrained (`train_config.TrainConfig`'s fields of the same names).

  No SE by default: the searched space has none, so the network that meets the budget is the one
  without it. `pool_members`: how many of the final pool's best are retrained, tested and timed (the
  chosen network first), at most the search's pool size.
  """
  epochs: int = 6
  steps_per_epoch: int = 0
  batch_size: int = 128
  learning_rate: float = 0.1
  final_learning_rate: float = 1e-3
  weight_decay: float = 5e-5
  mixup: float = 0.0
  label_smoothing: float = 0.0
  se: bool = False
  eval_batch_size: int = 500
  pool_members: int = 1

  def optimizer(self, momentum: float) -> optimizer_config.OptimizerConfig:
    """The retraining's optimizer; its momentum is the search's."""
    return optimizer_config.OptimizerConfig(self.learning_rate, self.final_learning_rate, momentum,
                                            self.weight_decay)

  def validate(self, pool_size: int | None = None):
    """Checks the settings `train_config.TrainConfig.validate` would, and `pool_members` against the
    search's `pool_size`, before the search spends anything."""
    errors.check_at_least(self.pool_members, 1, "Retrained pool members (--retrain_pool_members)")
    if pool_size is not None and self.pool_members > pool_size:
      raise errors.UserError(f"Retrained pool members (--retrain_pool_members) is {self.pool_members}; it "
                             f"must be at most the pool size {pool_size} (--pool_size).")
    space = space_lib.macro_space()
    fields = dataclasses.asdict(self)
    for name in ("learning_rate", "final_learning_rate", "weight_decay", "pool_members"):
      del fields[name]
    try:
      train_config.TrainConfig(space=space, arch=space.arch_from_indices([0] * len(space.layers)),
                            optimizer=self.optimizer(0.9), **fields).validate()
    except errors.UserError as error:  # its messages name train_main's flags; these are --retrain_*
      raise errors.UserError(str(error).replace("(--", "(--retrain_")) from error
    return self


def retrain_config(search_result: dict, result_path: str, retraining: Retraining,
                   pool_rank: int | None = None) -> train_config.TrainConfig:
  """The training config of the chosen network (`pool_rank` None) or of a final pool member, with the
  search's data, space and seed."""
  member = from_search.pool_member(search_result, result_path, pool_rank)
  space = space_lib.SearchSpace.from_json(search_result["space"])
  searched = search_result["config"]
  data = data_config.DataConfig(**searched["data"])
  return train_config.TrainConfig(
      space=space, arch=from_search.parse_arch(space, member["arch"]), se=retraining.se,
      epochs=retraining.epochs, steps_per_epoch=retraining.steps_per_epoch,
      batch_size=retraining.batch_size, optimizer=retraining.optimizer(searched["optimizer"]["momentum"]),
      mixup=retraining.mixup,
      label_smoothing=retraining.label_smoothing, eval_batch_size=retraining.eval_batch_size,
      strategy=searched["strategy"], seed=data.seed, search_result=result_path, pool_rank=pool_rank,
      predicted=from_search.search_predictions(member), data=data)


def _finished(path: str):
  if not files.exists(path):
    return None
  return files.read_json(path, "earlier result")


@dataclasses.dataclass
class _Job:
  """One pipeline run's settings, and what its stages after the search have produced so far."""
  work_dir: str
  search: dict
  retraining: Retraining
  latency_runs: int
  overwrite: bool
  progress: bool
  retrained: list = dataclasses.field(default_factory=list)
  exported: dict | None = None  # the chosen network's export_result.json

  def report(self, outcome=None) -> page.Run:
    return page.Run(self.search, tuple(self.retrained), self.exported, outcome)


def run_pipeline(search_config: search_config.SearchConfig, work_dir: str, retraining: Retraining,
                 latency_runs: int = 40, overwrite: bool = False, progress: bool = True) -> dict:
  """Runs (or resumes) every stage in `work_dir`; returns what pipeline_result.json holds."""
  start = time.time()
  errors.check_at_least(latency_runs, 1, "Latency runs (--latency_runs)")
  retraining.validate(search_config.pool_size)
  result_path = os.path.join(work_dir, search_lib.RESULT_FILE)
  search = search_lib.run_search(search_config, work_dir, overwrite, progress)
  job = _Job(work_dir, search, retraining, latency_runs, overwrite, progress)
  for rank in range(min(retraining.pool_members, len(search["final_pool"]))):
    _retrain_and_time(job, rank)
  constraint, exported, chosen = search["constraint"], job.exported, job.retrained[0]
  tflite = exported["formats"]["tflite"]
  result = {"test_top1": chosen["test_top1"], "latency_ms": tflite["latency"]["min_ms"],
            "budget_ms": constraint["budget"] if constraint["kind"] == "latency" else None,
            "predicted_latency_ms": chosen.get(constraint["prediction_key"]),
            "constraint": constraint["kind"], "arch": chosen["arch_string"],
            "params": chosen["params"], "flops": chosen["flops"],
            "latency_batch": exported["batch"], "latency_runs": tflite["latency"]["runs"],
            "retrained_pool": job.retrained, "wall_s": round(time.time() - start, 1),
            "paths": {"search_result": result_path,
                      "model": os.path.join(work_dir, RETRAIN_DIR, train_lib.MODEL_FILE),
                      **{name: os.path.join(work_dir, EXPORT_DIR, exported["formats"][name]["path"])
                         for name in EXPORT_FORMATS},
                      "report": os.path.join(work_dir, page.REPORT_FILE)}}
  result["within_budget"] = (result["budget_ms"] is None or result["latency_ms"] <= result["budget_ms"])
  files.write_json(os.path.join(work_dir, RESULT_FILE), result)
  _report(work_dir, job.report(result))
  return result


def _retrain_and_time(job: _Job, rank: int) -> None:
  """Retrains final pool member `rank` (0: the chosen network, exported in every format; the others to
  LiteRT only, to be timed) into `job`, writes its HParams session, and the report after each stage."""
  work_dir = job.work_dir
  model_dir = os.path.join(work_dir, *((RETRAIN_DIR,) if rank == 0 else (POOL_DIR, str(rank))))
  trained = _retrain(job.search, os.path.join(work_dir, search_lib.RESULT_FILE), model_dir, job.retraining,
                     None if rank == 0 else rank, job.overwrite, job.progress)
  job.retrained.append(_member(job.search, rank, trained))
  _report(work_dir, job.report())
  output_dir = os.path.join(work_dir if rank == 0 else model_dir, EXPORT_DIR)
  timed = _export(model_dir, output_dir, job.search, job.latency_runs,
                  EXPORT_FORMATS if rank == 0 else TIMED_FORMATS, job.overwrite)
  job.exported = job.exported or timed
  job.retrained[-1] = _member(job.search, rank, trained, timed)
  space = space_lib.SearchSpace.from_json(job.search["space"])
  hparams.write_retrained(os.path.join(work_dir, "tensorboard"), space, job.retrained[-1:])
  _report(work_dir, job.report())


def _member(search, rank, trained, exported=None) -> dict:
  """A retrained pool member: its search figures, test top-1 and (once timed) measured latency."""
  key = search["constraint"]["prediction_key"]
  tflite = (exported or {}).get("formats", {}).get("tflite")
  return {"rank": rank, "arch": trained["arch"], "arch_string": trained["arch_string"],
          "potential": search["final_pool"][rank]["potential"], "test_top1": trained["top1"],
          "measured_latency_ms": tflite["latency"]["min_ms"] if tflite else None,
          key: trained.get(key), "params": trained["params"], "flops": trained["flops"]}


def _report(work_dir, run: page.Run) -> None:
  """Redraws the pictures of the stages after the search and rewrites report.html."""
  constraint = run.search["constraint"]
  if run.retrained:
    figures.plot_retrained_front(run.retrained, constraint,
                                 os.path.join(work_dir, page.RETRAINED_FRONT_PNG))
  validation = constraint.get("table", {}).get("validation")
  tflite = (run.exported or {}).get("formats", {}).get("tflite")
  if validation and tflite:
    measured = (run.exported["arch_string"], run.exported["predicted_latency_ms"],
                tflite["latency"]["min_ms"])
    figures.plot_latency_validation(validation, os.path.join(work_dir, page.LATENCY_PNG), measured)
  page.write_report(work_dir, run)


def _retrain(search, result_path, retrain_dir, retraining, pool_rank, overwrite, progress) -> dict:
  config = retrain_config(search, result_path, retraining, pool_rank)
  done = _finished(os.path.join(retrain_dir, train_lib.RESULT_FILE))
  if done is not None and not overwrite:
    saved = _finished(os.path.join(retrain_dir, train_lib.CONFIG_FILE)) or {}
    differences = workdir.config_differences(saved, json.loads(json.dumps(config.to_json())))
    if not differences:
      return done
    raise errors.UserError(
        f"{retrain_dir!r} holds a finished retraining with other settings ({'; '.join(differences[:3])}); "
        f"delete that directory to retrain (the search is kept), or use another --work_dir.")
  if progress:
    print(f"Retraining {config.space.arch_to_string(config.arch)} from scratch for {config.epochs} "
          f"epochs.", flush=True)
  return train_lib.run_training(config, retrain_dir, overwrite=overwrite,
                                progress=progress)


def _export(model_dir, output_dir, search, latency_runs, formats, overwrite) -> dict:
  """Exports the model retrained in `model_dir` to `formats` in `output_dir` and times them; an export
  newer than the model is reused."""
  from export import export_lib  # pylint: disable=g-import-not-at-top
  from export import spec as spec_lib  # pylint: disable=g-import-not-at-top
  model_path = os.path.join(model_dir, train_lib.MODEL_FILE)
  done = _finished(os.path.join(output_dir, export_lib.RESULT_FILE))
  model_time = files.mtime(model_path)
  if done is not None and not overwrite and files.mtime(
      os.path.join(output_dir, export_lib.RESULT_FILE)) >= model_time:
    return done
  batch = search["config"]["latency_batch"]
  config = export_lib.ExportConfig(output_dir=output_dir, formats=formats, overwrite=True,
                                   batch=batch, latency_runs=latency_runs)
  model = spec_lib.load_model(model_path)
  spec = spec_lib.resolve_spec(model, os.path.join(model_dir, train_lib.RESULT_FILE))
  height, _, channels = spec.input_shape
  data = dataclasses.replace(data_config.DataConfig(**search["config"]["data"]), resolution=height,
                             channels=channels)
  images = export_lib.dataset_images(data, "test", 256)
  return export_lib.run_export(model, spec, config, images)
