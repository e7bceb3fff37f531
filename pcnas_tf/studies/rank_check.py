"""Ranking correlation of shared weights (paper section 4.4, Fig. 2b).

`run_rank_check(config, work_dir)` asks how well a trained supergraph ranks architectures:

  1. Two supergraphs trained with the same budget: PC-NAS' (shrinking) and One-Shot's (uniform single
     paths, no shrinking), searched in `pcnas/` and `oneshot/`, or given as finished search directories.
  2. K distinct feasible architectures: by default the candidates of the PC-NAS search's final pool (its
     last interval's full paths, then one-mixop mutations of final-pool members if K needs more), as the
     paper does; or uniform feasible ones from the search's constraint sampler.
  3. Each trained alone for a fixed short budget (`ablation.train_alone`); its test top-1.
  4. Each scored in both supergraphs with inherited weights, by `PotentialEvaluator` on the search's K
     fixed validation batches: the mean accuracy over the batches, in both BN modes (the search's is the
     headline, the other shows the effect of the BN choice on the ranking).
  5. Pearson, Spearman and Kendall's tau between supergraph and stand-alone accuracy, per supergraph and
     BN mode, in rank_result.json, and a scatter plot of both supergraphs in rank.png.
"""

import dataclasses
import json
import math
import os
import time
import warnings

import numpy as np
import scipy.stats

from pcnas_tf.studies import ablation as ablation_lib
from pcnas_tf.studies import ground_truth_build
from pcnas_tf import files
from pcnas_tf import provenance
from pcnas_tf.training import checkpoint
from pcnas_tf.training import workdir
from pcnas_tf.constraints import constraint as constraint_lib
from pcnas_tf.data import data_config
from pcnas_tf.data import sources as data_sources
from pcnas_tf.data import batches as batches_lib
from pcnas_tf import errors
from pcnas_tf.searcher import baselines as evolution
from pcnas_tf.searcher import potential as potential_lib
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.searcher import search_config
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.nn import supergraph as supergraph_lib

RESULT_FILE = "rank_result.json"
PLOT_FILE = "rank.png"
SOURCES = ("pool", "random")
# Each supergraph: (name, training, search). The One-Shot run searches by EA, which saves no checkpoint
# after training; only its supergraph is used here.
SUPERGRAPHS = (("pcnas", "pcnas", "pcnas"), ("oneshot", "oneshot", "ea"))
STANDALONE_DIR = "standalone"


# What a given search must share with the rank check's config: the space, the budget and the data (not
# where this machine keeps it, `data_config.MACHINE_LOCAL`).
_SHARED = ("space", "width", "constraint", "budget", "latency_backend", "latency_batch",
           "calibration_archs", "data")


def _shared(config_json: dict) -> dict:
  shared = json.loads(json.dumps({name: config_json.get(name) for name in _SHARED}))
  shared["data"] = {k: v for k, v in (shared["data"] or {}).items() if k not in data_config.MACHINE_LOCAL}
  return shared


@dataclasses.dataclass(frozen=True)
class RankConfig:
  """The searches' base config, the architectures to rank, and their stand-alone budget."""
  search: search_config.SearchConfig
  num_archs: int = 8                 # K
  archs: str = "pool"                # pool: candidates of the PC-NAS final pool; random: feasible ones
  standalone_epochs: int = 2
  pcnas_dir: str = ""                # a finished PC-NAS search to reuse; "": search in <work_dir>/pcnas
  oneshot_dir: str = ""              # a finished One-Shot search to reuse; "": <work_dir>/oneshot
  ground_truth: str = ""             # a ground-truth table: stand-alone accuracies from it (added on demand)

  def validate(self):
    self.search.validate()
    if self.num_archs < 2:
      raise errors.UserError(f"Number of architectures K (--num_archs) is {self.num_archs}; it must be "
                             f"at least 2 to rank.")
    if self.archs not in SOURCES:
      raise errors.UserError(f"Architecture source {self.archs!r} (--archs) is unknown; allowed: "
                             f"{', '.join(SOURCES)}.")
    if self.standalone_epochs < 1:
      raise errors.UserError(f"Stand-alone epochs (--standalone_epochs) is {self.standalone_epochs}; it "
                             f"must be at least 1.")
    for flag, path in (("--pcnas_dir", self.pcnas_dir), ("--oneshot_dir", self.oneshot_dir)):
      if path and not files.exists(os.path.join(path, search_lib.RESULT_FILE)):
        raise errors.UserError(f"{flag}={path} holds no {search_lib.RESULT_FILE}; give the work "
                               f"directory of a finished search, or leave {flag} empty to run one.")
      if path:
        result = files.read_json(os.path.join(path, search_lib.RESULT_FILE), "search result")
        differences = workdir.config_differences(_shared(result.get("config") or {}),
                                                 _shared(self.search.to_json()))
        if differences:
          raise errors.UserError(
              f"{flag}={path} was searched with other settings than this rank check "
              f"({'; '.join(differences[:3])}), so its supergraph would not share the other's budget "
              f"and data; search again with these settings, or leave {flag} empty.")
    if self.ground_truth:
      ground_truth_build.check_matches(self.ground_truth, self.search)
    return self

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


# Correlation ----------------------------------------------------------------------------------------


def correlations(supergraph_accuracy, standalone_accuracy) -> dict:
  """Pearson, Spearman and Kendall's tau of two accuracy lists; NaN where one list is constant."""
  x, y = np.asarray(supergraph_accuracy, float), np.asarray(standalone_accuracy, float)
  if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return {"pearson": math.nan, "spearman": math.nan, "kendall": math.nan}
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return {"pearson": float(scipy.stats.pearsonr(x, y)[0]),
            "spearman": float(scipy.stats.spearmanr(x, y)[0]),
            "kendall": float(scipy.stats.kendalltau(x, y)[0])}


# Architectures ----------------------------------------------------------------------------------------


def select_archs(result: dict, sampler, k: int, source: str, rng: np.random.Generator) -> list:
  """K distinct feasible paths (tuples of choice indices) of a search result's space.

  Args:
    result: a PC-NAS search result (search_result.json).
    sampler: the search's feasible-path sampler (`SearchConstraint.sampler`).
    k: how many.
    source: `pool`: the feasible candidates of the final pool (the last interval's full paths) in random
      order, then one-mixop mutations of final-pool members; `random`: uniform feasible paths.
    rng: the source of randomness.

  Raises:
    UserError: if the space has fewer than `k` feasible architectures.
  """
  check_num_archs(sampler, k)
  chosen = []
  if source == "pool":
    candidates = [tuple(c) for c in result["intervals"][-1]["candidates"]] if result["intervals"] else []
    feasible = [c for c in candidates if sampler.is_feasible(c)]
    chosen = [feasible[i] for i in rng.permutation(len(feasible))][:k]
    space = space_lib.SearchSpace.from_json(result["space"])
    members = [space.indices(m["arch"]) for m in result["final_pool"]]
    for _ in range(100 * k):
      if len(chosen) == k:
        break
      child = evolution.mutate(members[int(rng.integers(len(members)))], sampler, rng)
      chosen += [child] if child not in chosen else []
  while len(chosen) < k:  # `random`, or a final pool whose neighbourhood is smaller than k
    path = tuple(sampler.sample((), 1, rng)[0])
    chosen += [path] if path not in chosen else []
  return chosen


def check_num_archs(sampler, k: int) -> None:
  """Raises `UserError` if fewer than `k` architectures fit the budget of `sampler`."""
  if sampler.count() < k:
    raise errors.UserError(f"Only {sampler.count()} architectures fit the budget; ask for at most that "
                           f"many with --num_archs, or raise --budget.")


# Supergraph accuracy ----------------------------------------------------------------------------------


def load_supergraph(search_dir: str, space, input_shape, num_classes) -> supergraph_lib.Supergraph:
  """The supergraph of the newest checkpoint in a search's work directory."""
  found = checkpoint.latest(os.path.join(search_dir, "checkpoints"))
  if found is None:
    raise errors.UserError(f"Search directory {search_dir!r} has no checkpoint; give the work directory "
                           f"of a finished search.")
  supergraph = supergraph_lib.Supergraph(space, tuple(input_shape), num_classes)
  checkpoint.assign(checkpoint.named(supergraph.variables, checkpoint.SUPERGRAPH), found[0], search_dir,
                    "this supergraph")
  return supergraph


def supergraph_accuracies(supergraph, batches, paths, bn_mode: str) -> list:
  """Each path's accuracy in `supergraph` with its inherited weights: the mean over all `batches`."""
  evaluator = potential_lib.PotentialEvaluator(supergraph, batches, bn_mode)
  return [float(np.mean([evaluator.accuracy(tuple(path), b) for b in range(len(batches))]))
          for path in paths]


# The study --------------------------------------------------------------------------------------------


def search_dirs(config: RankConfig, work_dir: str, overwrite=False, progress=True) -> dict:
  """{name: (search work directory, its result)}: the given directories, or searches run here."""
  given = {"pcnas": config.pcnas_dir, "oneshot": config.oneshot_dir}
  dirs = {}
  for name, training, method in SUPERGRAPHS:
    if given[name]:
      result = files.read_json(os.path.join(given[name], search_lib.RESULT_FILE), "search result")
      dirs[name] = (given[name], result)
    else:
      search = dataclasses.replace(config.search, training=training, search=method)
      directory = os.path.join(work_dir, name)
      dirs[name] = (directory, search_lib.run_search(search, directory, overwrite, progress))
  fingerprints = {space_lib.SearchSpace.from_json(r["space"]).fingerprint() for _, r in dirs.values()}
  if len(fingerprints) > 1:
    raise errors.UserError(f"--pcnas_dir={dirs['pcnas'][0]} and --oneshot_dir={dirs['oneshot'][0]} "
                           f"searched different spaces; give two searches of the same space.")
  return dirs


def run_rank_check(config: RankConfig, work_dir: str, overwrite=False, progress=True) -> dict:
  """Runs the ranking study in `work_dir`; returns what rank_result.json holds."""
  config.validate()
  check_study(config, work_dir, overwrite, progress)
  files.make_dir(work_dir)
  timings, start = {}, time.time()
  dirs = search_dirs(config, work_dir, overwrite, progress)
  timings["searches_s"], start = time.time() - start, time.time()
  pcnas_result = dirs["pcnas"][1]
  space = space_lib.SearchSpace.from_json(pcnas_result["space"])
  shape, classes = pcnas_result["input_shape"], pcnas_result["num_classes"]
  constraint = constraint_lib.build(space, tuple(shape), classes, config.search, progress)
  paths = select_archs(pcnas_result, constraint.sampler, config.num_archs, config.archs,
                       np.random.default_rng(config.search.seed))
  if config.ground_truth:
    archs = _from_table(config, space, paths, work_dir, progress)
  else:
    archs = [_standalone(config, space, path, work_dir, overwrite, progress) for path in paths]
  timings["standalone_s"], start = time.time() - start, time.time()
  batches = validation_batches(config.search, space)
  for name, (directory, _) in dirs.items():
    supergraph = load_supergraph(directory, space, shape, classes)
    for bn_mode in potential_lib.BN_MODES:
      for arch, accuracy in zip(archs, supergraph_accuracies(supergraph, batches, paths, bn_mode)):
        arch["supergraph"].setdefault(name, {})[bn_mode] = accuracy
  timings["eval_s"] = time.time() - start
  result = _result(config, archs, dirs, timings)
  files.write_json(os.path.join(work_dir, RESULT_FILE), result)
  plot_ranking(result, os.path.join(work_dir, PLOT_FILE))
  return result


def check_study(config: RankConfig, work_dir: str, overwrite=False, progress=True) -> None:
  """Makes every check of the study's searches, trainings and scoring before the first one starts.

  The work directories, the data sizes against the searches' and the trainings' batches and the
  validation batches, the budget against the costs (a latency table is built here once, and read
  from its cache later) and K against the feasible architectures.
  """
  files.check_writable_dir(work_dir)
  given = {"pcnas": config.pcnas_dir, "oneshot": config.oneshot_dir}
  for name, training, method in SUPERGRAPHS:
    if not given[name]:
      search = dataclasses.replace(config.search, training=training, search=method)
      search_lib.check_work_dir(os.path.join(work_dir, name), search, overwrite)
  if config.pcnas_dir:
    result = files.read_json(os.path.join(config.pcnas_dir, search_lib.RESULT_FILE), "search result")
    space = space_lib.SearchSpace.from_json(result["space"])
  else:
    space = space_lib.get_space(config.search.space, config.search.width)
  splits, constraint = search_lib.load_checked(config.search, space, progress)
  ablation_lib.check_standalone_data(config.search, space, splits)
  check_num_archs(constraint.sampler, config.num_archs)


def _standalone(config, space, path, work_dir, overwrite, progress) -> dict:
  arch = space.arch_from_indices(path)
  name = space.arch_to_string(arch)
  trained = ablation_lib.train_alone(config.search, space, arch, config.standalone_epochs,
                                     os.path.join(work_dir, STANDALONE_DIR, name), overwrite, progress)
  return {"arch": list(arch), "arch_string": name, "path": list(path), "standalone_top1": trained["top1"],
          "standalone_s": trained["wall_time_s"], "supergraph": {}}


def _from_table(config, space, paths, work_dir, progress) -> list:
  """The stand-alone accuracies of `paths` from the ground-truth table (networks it lacks are trained
  with its schedule and added first)."""
  found = ground_truth_build.entries(config.ground_truth, paths, os.path.join(work_dir, ground_truth_build.SCRATCH_DIR),
                                     progress=progress)
  archs = []
  for path, entry in zip(paths, found):
    arch = space.arch_from_indices(path)
    archs.append({"arch": list(arch), "arch_string": space.arch_to_string(arch), "path": list(path),
                  "standalone_top1": entry.accuracy / 100, "standalone_s": None,
                  "standalone_source": config.ground_truth, "supergraph": {}})
  return archs


def validation_batches(config: search_config.SearchConfig, space) -> list:
  """The search's K fixed validation batches (same data config, seed and batch size)."""
  splits = data_sources.load(config.data, min_resolution=space.total_stride)
  batches = batches_lib.ValidationBatches(splits, config.data, config.eval_batch_size, config.eval_batches)
  return [batches.batch(i) for i in range(len(batches))]


def _result(config: RankConfig, archs: list, dirs: dict, timings: dict) -> dict:
  standalone = [a["standalone_top1"] for a in archs]
  table = {name: {mode: correlations([a["supergraph"][name][mode] for a in archs], standalone)
                  for mode in potential_lib.BN_MODES} for name in dirs}
  return {"archs": archs, "num_archs": len(archs), "source": config.archs,
          "bn_mode": config.search.bn_mode, "correlations": table,
          "search_dirs": {name: directory for name, (directory, _) in dirs.items()},
          "standalone_epochs": config.standalone_epochs, "timings": timings, "config": config.to_json(),
          "versions": provenance.versions()}


def plot_ranking(result: dict, path: str) -> None:
  """Fig. 2b: stand-alone vs supergraph accuracy, One-Shot left and PC-NAS right (search's BN mode)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  mode = result["bn_mode"]
  figure, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True)
  standalone = [a["standalone_top1"] for a in result["archs"]]
  for axis, name, title in zip(axes, ("oneshot", "pcnas"), ("One-Shot", "PC-NAS")):
    axis.scatter(standalone, [a["supergraph"][name][mode] for a in result["archs"]])
    figures = result["correlations"][name][mode]
    axis.set_title(f"{title}: Pearson {figures['pearson']:.2f}, Kendall {figures['kendall']:.2f}")
    axis.set_xlabel("stand-alone test top-1")
    axis.set_ylabel(f"supergraph accuracy (BN {mode})")
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def format_correlations(result: dict) -> str:
  """One line per supergraph and BN mode; the search's BN mode is marked with *."""
  lines = [f"{result['num_archs']} architectures ({result['source']}), stand-alone top-1 "
           f"{min(a['standalone_top1'] for a in result['archs']):.2%}.."
           f"{max(a['standalone_top1'] for a in result['archs']):.2%}",
           f"{'supergraph':10} {'BN':7} {'pearson':>8} {'spearman':>9} {'kendall':>8}"]
  for name, modes in result["correlations"].items():
    for mode, figures in modes.items():
      mark = "*" if mode == result["bn_mode"] else " "
      lines.append(f"{name:10} {mode + mark:7} {figures['pearson']:8.3f} {figures['spearman']:9.3f} "
                   f"{figures['kendall']:8.3f}")
  return "\n".join(lines)
