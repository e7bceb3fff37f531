"""The paper's Table 3 (section 4.4): which of PC-NAS' two halves, shrinking and the pool, matter.

`run_ablation(config, work_dir)` runs one search per row of the grid, all from the same base config in
sub work directories, then trains each row's chosen architecture alone with the supergraph's budget
(same epochs, steps, batch and learning-rate schedule) and reports its test top-1:

  training  search   sub work directory
  pcnas     pcnas    pcnas_pcnas/     shrinking supergraph, pool search (PC-NAS)
  oneshot   pcnas    oneshot_pcnas/   uniform single-path supergraph, pool search
  oneshot   ea       oneshot_ea/      uniform single-path supergraph, evolution (P = 5, same images)

The two One-Shot rows share one supergraph training (see `share_oneshot_training`). Each row's
stand-alone training runs in `<row>/standalone/` through `standalone.run_training`, without SE, MixUp or
label smoothing, so the network trained alone is the one the supergraph scored. Everything resumes: a
finished search or training is read back, an interrupted one continues from its checkpoint.
"""

import dataclasses
import os

from pcnas_tf import files
from pcnas_tf import provenance

from pcnas_tf.training import checkpoint
from pcnas_tf import errors
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.searcher import search_config
from pcnas_tf.studies import ground_truth_build
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import standalone as train_lib
from pcnas_tf.training import train_config

RESULT_FILE = "ablation_result.json"
CONFIG_FILE = "ablation_config.json"
STANDALONE_DIR = "standalone"
GRID = (("pcnas", "pcnas"), ("oneshot", "pcnas"), ("oneshot", "ea"))


@dataclasses.dataclass(frozen=True)
class AblationConfig:
  """The base search config of every row, and the stand-alone training budget."""
  search: search_config.SearchConfig
  standalone_epochs: int = 0         # 0: the supergraph's epochs (Tw + L * Ti), the same budget
  ground_truth: str = ""             # a ground-truth table: top-1 from it (added on demand), not trained here

  def validate(self):
    self.search.validate()
    if self.standalone_epochs < 0:
      raise errors.UserError(f"Stand-alone epochs (--standalone_epochs) is {self.standalone_epochs}; it "
                             f"must be at least 0 (0: the supergraph's epochs).")
    if self.ground_truth:
      ground_truth_build.check_matches(self.ground_truth, self.search)
    return self

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def row_name(training: str, search: str) -> str:
  return f"{training}_{search}"


def supergraph_epochs(config: search_config.SearchConfig) -> int:
  """Epochs of supergraph training, Tw + L * Ti, for either training method."""
  space = space_lib.get_space(config.space, config.width)
  return config.warmup_epochs + space.num_layers * config.interval_epochs


# Stand-alone training --------------------------------------------------------------------------------


def standalone_config(config: search_config.SearchConfig, space, arch, epochs: int) -> train_config.TrainConfig:
  """Training `arch` alone with the search's optimizer, batch, steps and data, for `epochs` epochs.

  No SE, MixUp or label smoothing: the network is the supergraph's path, trained by the supergraph's
  recipe, so the stand-alone accuracy measures the architecture the search scored.
  """
  return train_config.TrainConfig(
      space=space, arch=tuple(arch), se=False, epochs=epochs, steps_per_epoch=config.steps_per_epoch,
      batch_size=config.batch_size, optimizer=config.optimizer, mixup=0.0, label_smoothing=0.0,
      eval_batch_size=config.eval_batch_size, strategy=config.strategy, seed=config.seed, data=config.data)


def train_alone(config: search_config.SearchConfig, space, arch, epochs: int, work_dir: str,
                overwrite=False, progress=True) -> dict:
  """Trains `arch` alone in `work_dir` (or reads back a finished training); returns train_result.json."""
  result_path = os.path.join(work_dir, train_lib.RESULT_FILE)
  if not overwrite and files.exists(result_path):
    return files.read_json(result_path, "training result")
  return train_lib.run_training(standalone_config(config, space, arch, epochs), work_dir, overwrite,
                                progress)


def check_standalone_data(config: search_config.SearchConfig, space, splits) -> None:
  """Raises `UserError` unless `splits` can train architectures of `space` alone (`train_alone`).

  The checks read only the data settings of the training, the same for every architecture, so they are
  made with any one before a search has chosen them.
  """
  any_arch = space.arch_from_indices([0] * space.num_layers)
  train_lib.check_splits(standalone_config(config, space, any_arch, 1), splits)


# Searches --------------------------------------------------------------------------------------------


def share_oneshot_training(source_dir: str, target_dir: str, config: search_config.SearchConfig,
                           overwrite=False) -> bool:
  """Starts a One-Shot run in `target_dir` from the supergraph a finished One-Shot EA run trained.

  EA and random search write no checkpoint after training, so the newest checkpoint of a finished
  One-Shot EA run holds the supergraph at the end of training, the Oracle untouched and the RNG where
  training left it: the state a One-Shot pool search reaches before searching, as the search's
  training depends on neither the search method nor the Oracle. Copying that checkpoint makes the pool
  search resume there instead of training the same supergraph again.

  Returns:
    True if the checkpoint was copied; False if `target_dir` already has its own checkpoints.
  """
  search_lib.prepare_work_dir(target_dir, config, overwrite)
  if checkpoint.latest(os.path.join(target_dir, "checkpoints")) is not None:
    return False
  arrays, state = checkpoint.latest(os.path.join(source_dir, "checkpoints"))
  if state["oracle"]["history"] or state["epoch"] != supergraph_epochs(config):
    raise ValueError(f"The newest checkpoint in {source_dir!r} is not the end of One-Shot training "
                     f"(epoch {state['epoch']}, {len(state['oracle']['history'])} intervals).")
  checkpoint.save(os.path.join(target_dir, "checkpoints"), state["checkpoints"], arrays, state)
  return True


def run_grid(config: search_config.SearchConfig, work_dir: str, overwrite=False, progress=True) -> dict:
  """Runs the grid's searches in sub work directories; returns {(training, search): result}."""
  results = {}
  oneshot_ea = dataclasses.replace(config, training="oneshot", search="ea")
  ea_dir = os.path.join(work_dir, row_name("oneshot", "ea"))
  results[("oneshot", "ea")] = search_lib.run_search(oneshot_ea, ea_dir, overwrite, progress)
  oneshot_pcnas = dataclasses.replace(config, training="oneshot", search="pcnas")
  pool_dir = os.path.join(work_dir, row_name("oneshot", "pcnas"))
  shared = share_oneshot_training(ea_dir, pool_dir, oneshot_pcnas, overwrite)
  results[("oneshot", "pcnas")] = search_lib.run_search(oneshot_pcnas, pool_dir, False, progress)
  results[("oneshot", "pcnas")]["search"]["shared_training_with"] = row_name("oneshot", "ea")
  results[("oneshot", "pcnas")]["search"]["shared_checkpoint_copied"] = shared
  pcnas = dataclasses.replace(config, training="pcnas", search="pcnas")
  results[("pcnas", "pcnas")] = search_lib.run_search(
      pcnas, os.path.join(work_dir, row_name("pcnas", "pcnas")), overwrite, progress)
  return results


# The ablation ----------------------------------------------------------------------------------------


def run_ablation(config: AblationConfig, work_dir: str, overwrite=False, progress=True) -> dict:
  """Runs Table 3's grid in `work_dir`; returns what ablation_result.json holds."""
  config.validate()
  check_grid(config, work_dir, overwrite, progress)
  _prepare(work_dir, config)
  searches = run_grid(config.search, work_dir, overwrite, progress)
  space = space_lib.get_space(config.search.space, config.search.width)
  epochs = config.standalone_epochs or supergraph_epochs(config.search)
  rows = []
  if config.ground_truth:  # one schedule for every row: the table's
    paths = [space.indices(searches[row]["chosen"]["arch"]) for row in GRID]
    found = ground_truth_build.entries(config.ground_truth, paths,
                                       os.path.join(work_dir, ground_truth_build.SCRATCH_DIR),
                                       progress=progress)
    trained = [{"top1": entry.accuracy / 100, "top5": None, "wall_time_s": None} for entry in found]
  else:
    trained = [train_alone(config.search, space, searches[(training, method)]["chosen"]["arch"], epochs,
                           os.path.join(work_dir, row_name(training, method), STANDALONE_DIR),
                           overwrite, progress) for training, method in GRID]
  for (training, method), alone in zip(GRID, trained):
    rows.append(_row(training, method, searches[(training, method)], alone))
  result = {"rows": rows, "standalone_epochs": None if config.ground_truth else epochs,
            "standalone_source": config.ground_truth or "trained here", "config": config.to_json(),
            "versions": provenance.versions()}
  files.write_json(os.path.join(work_dir, RESULT_FILE), result)
  return result


def check_grid(config: AblationConfig, work_dir: str, overwrite=False, progress=True) -> None:
  """Makes every check of the grid's searches and trainings before the first one starts.

  The work directories, the data sizes against the searches' and the trainings' batches, the budget
  against the costs (a latency table is built here once, and read from its cache by the searches).
  """
  files.check_writable_dir(work_dir)
  for training, method in GRID:
    row = dataclasses.replace(config.search, training=training, search=method)
    search_lib.check_work_dir(os.path.join(work_dir, row_name(training, method)), row, overwrite)
  space = space_lib.get_space(config.search.space, config.search.width)
  splits, _ = search_lib.load_checked(config.search, space, progress)
  check_standalone_data(config.search, space, splits)


def _prepare(work_dir: str, config: AblationConfig) -> None:
  files.make_dir(work_dir)
  files.write_json(os.path.join(work_dir, CONFIG_FILE), config.to_json())


def _row(training: str, method: str, found: dict, trained: dict) -> dict:
  chosen, constraint = found["chosen"], found["constraint"]
  key = constraint.get("prediction_key", f"predicted_{constraint['kind']}")
  return {"training": training, "search": method, "arch": chosen["arch"],
          "arch_string": chosen["arch_string"], "score": chosen["potential"],
          key: chosen[key], "budget": constraint["budget"],
          "params": chosen["params"], "flops": chosen["flops"], "top1": trained["top1"],
          "top5": trained["top5"], "search_s": sum(found["timings"].values()),
          "standalone_s": trained["wall_time_s"], "search_details": found["search"]}


def format_table(result: dict) -> str:
  """Table 3 as text: one line per row of the grid."""
  rows = result["rows"]
  kind = next(k for k in rows[0] if k.startswith("predicted_"))
  lines = [f"{'training':9} {'search':7} {'architecture':14} {'score':>6} {kind[10:]:>10} "
           f"{'top-1':>7} {'search s':>9} {'alone s':>8}"]
  for row in rows:
    alone = "table" if row["standalone_s"] is None else f"{row['standalone_s']:.0f}"
    lines.append(f"{row['training']:9} {row['search']:7} {row['arch_string']:14} {row['score']:6.3f} "
                 f"{row[kind]:10.4g} {row['top1']:7.2%} {row['search_s']:9.0f} {alone:>8}")
  return "\n".join(lines)
