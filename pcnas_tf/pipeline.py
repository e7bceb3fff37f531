"""The user's whole job in one call: search, retrain the chosen network, test it, export it, time it.

Each stage is the library call its own binary makes (`search_lib.run_search`, `train_lib.run_training`,
`export_lib.run_export`), in sub-directories of one work directory:

  <work_dir>/                 the search (search_result.json, ...), as `search_main` writes it
  <work_dir>/retrain/         the chosen network trained from scratch (model.keras, train_result.json)
  <work_dir>/export/          SavedModel, LiteRT and ONNX files, checked against the Keras model
  <work_dir>/pipeline_result.json

A finished stage is not run again, so the same command resumes (or returns at once). The exported LiteRT
model is timed the way the latency table was measured (the table's batch, LiteRT with XNNPACK, one
thread, the minimum of `latency_runs` runs) and compared with the budget the search used.
"""

import dataclasses
import json
import os
import time

from pcnas_tf import files

from pcnas_tf.training import workdir
from pcnas_tf import errors
from pcnas_tf.data import data_config
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.searcher import search_config
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import standalone as train_lib
from pcnas_tf.training import from_search
from pcnas_tf.training import train_config
from pcnas_tf.training import optimizer_config

RESULT_FILE = "pipeline_result.json"
RETRAIN_DIR = "retrain"
EXPORT_DIR = "export"
EXPORT_FORMATS = ("saved_model", "tflite", "onnx")


@dataclasses.dataclass(frozen=True)
class Retraining:
  """How the chosen network is retrained (`train_config.TrainConfig`'s fields of the same names).

  No SE by default: the searched space has none, so the network that meets the budget is the one
  without it.
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

  def optimizer(self, momentum: float) -> optimizer_config.OptimizerConfig:
    """The retraining's optimizer; its momentum is the search's."""
    return optimizer_config.OptimizerConfig(self.learning_rate, self.final_learning_rate, momentum,
                                            self.weight_decay)

  def validate(self):
    """Checks the settings `train_config.TrainConfig.validate` would, before the search spends anything."""
    space = space_lib.macro_space()
    fields = dataclasses.asdict(self)
    for name in ("learning_rate", "final_learning_rate", "weight_decay"):
      del fields[name]
    try:
      train_config.TrainConfig(space=space, arch=space.arch_from_indices([0] * len(space.layers)),
                            optimizer=self.optimizer(0.9), **fields).validate()
    except errors.UserError as error:  # its messages name train_main's flags; these are --retrain_*
      raise errors.UserError(str(error).replace("(--", "(--retrain_")) from error
    return self


def retrain_config(search_result: dict, result_path: str, retraining: Retraining) -> train_config.TrainConfig:
  """The chosen network's training config, with the search's data, space and seed."""
  member = from_search.pool_member(search_result, result_path)
  space = space_lib.SearchSpace.from_json(search_result["space"])
  searched = search_result["config"]
  data = data_config.DataConfig(**searched["data"])
  return train_config.TrainConfig(
      space=space, arch=from_search.parse_arch(space, member["arch"]), se=retraining.se,
      epochs=retraining.epochs, steps_per_epoch=retraining.steps_per_epoch,
      batch_size=retraining.batch_size, optimizer=retraining.optimizer(searched["optimizer"]["momentum"]),
      mixup=retraining.mixup,
      label_smoothing=retraining.label_smoothing, eval_batch_size=retraining.eval_batch_size,
      strategy=searched["strategy"], seed=data.seed, search_result=result_path,
      predicted=from_search.search_predictions(member), data=data)


def _finished(path: str):
  if not os.path.exists(path):
    return None
  return files.read_json(path, "earlier result")


def run_pipeline(search_config: search_config.SearchConfig, work_dir: str, retraining: Retraining,
                 latency_runs: int = 40, overwrite: bool = False, progress: bool = True) -> dict:
  """Runs (or resumes) every stage in `work_dir`; returns what pipeline_result.json holds."""
  start = time.time()
  errors.check_at_least(latency_runs, 1, "Latency runs (--latency_runs)")
  retraining.validate()
  result_path = os.path.join(work_dir, search_lib.RESULT_FILE)
  search = search_lib.run_search(search_config, work_dir, overwrite, progress)
  trained = _retrain(search, result_path, os.path.join(work_dir, RETRAIN_DIR), retraining, overwrite,
                     progress)
  exported = _export(work_dir, search, latency_runs, overwrite)
  constraint = search["constraint"]
  tflite = exported["formats"]["tflite"]
  result = {"test_top1": trained["top1"], "latency_ms": tflite["latency"]["min_ms"],
            "budget_ms": constraint["budget"] if constraint["kind"] == "latency" else None,
            "predicted_latency_ms": trained.get(constraint["prediction_key"]),
            "constraint": constraint["kind"], "arch": trained["arch_string"],
            "params": trained["params"], "flops": trained["flops"],
            "latency_batch": exported["batch"], "latency_runs": tflite["latency"]["runs"],
            "wall_s": round(time.time() - start, 1),
            "paths": {"search_result": result_path,
                      "model": os.path.join(work_dir, RETRAIN_DIR, train_lib.MODEL_FILE),
                      **{name: os.path.join(work_dir, EXPORT_DIR, exported["formats"][name]["path"])
                         for name in EXPORT_FORMATS}}}
  result["within_budget"] = (result["budget_ms"] is None or result["latency_ms"] <= result["budget_ms"])
  files.write_json(os.path.join(work_dir, RESULT_FILE), result)
  return result


def _retrain(search, result_path, retrain_dir, retraining, overwrite, progress) -> dict:
  config = retrain_config(search, result_path, retraining)
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


def _export(work_dir, search, latency_runs, overwrite) -> dict:
  from export import export_lib  # pylint: disable=g-import-not-at-top
  from export import spec as spec_lib  # pylint: disable=g-import-not-at-top
  output_dir = os.path.join(work_dir, EXPORT_DIR)
  model_path = os.path.join(work_dir, RETRAIN_DIR, train_lib.MODEL_FILE)
  done = _finished(os.path.join(output_dir, export_lib.RESULT_FILE))
  model_time = os.path.getmtime(model_path)
  if done is not None and not overwrite and os.path.getmtime(
      os.path.join(output_dir, export_lib.RESULT_FILE)) >= model_time:
    return done
  batch = search["config"]["latency_batch"]
  config = export_lib.ExportConfig(output_dir=output_dir, formats=EXPORT_FORMATS, overwrite=True,
                                   batch=batch, latency_runs=latency_runs)
  model = spec_lib.load_model(model_path)
  spec = spec_lib.resolve_spec(model, os.path.join(work_dir, RETRAIN_DIR, train_lib.RESULT_FILE))
  height, _, channels = spec.input_shape
  data = dataclasses.replace(data_config.DataConfig(**search["config"]["data"]), resolution=height,
                             channels=channels)
  images = export_lib.dataset_images(data, "test", 256)
  return export_lib.run_export(model, spec, config, images)
