"""Does the search work? PC-NAS judged on a ground-truth table against One-Shot, EA, random search and
free proxies (the table: `ground_truth`; the runner: bench/search_quality.py).

For each seed of supergraph training (every method gets the same training budget: Tw + L * Ti epochs of
the same steps, batch and schedule):
  * One supergraph trained One-Shot (uniform single paths; independent of the budget). Its accuracy on
    the search's K validation batches ranks every network of the table, in both BN modes; then, under
    each budget, EA and random search on it, with PC-NAS' number of evaluations
    (`ablation.share_oneshot_training` hands the trained supergraph to each of them).
  * Under each budget, one PC-NAS run (its shrinking depends on the budget). The candidates of its last
    interval are whole networks; their potentials rank them against the ground truth (Fig. 2b's
    protocol: the networks the search actually compared at the end).
  * Random networks trained alone for the same compute: the best, by validation accuracy, of N
    feasible networks of the table, N = the supergraph's training steps / the table's steps per network
    (at least 1). The table's networks are a uniform draw, so this is N uniform feasible networks.
  * The feasible network with the most FLOPs: the free baseline.
Every chosen network that the table does not hold is trained on demand with the table's schedule and
added to it (`ground_truth_build.add_networks`), so every method is scored on the same ground truth.

Feasibility is the search's own: the predicted latency (the search's latency table) within the budget.
Regret: the best feasible network of the table (added ones included) minus the chosen one (test
top-1, points); the search itself only ever sees the validation carve-out. `top_percent`: the share of
the table's feasible drawn networks (a uniform sample) that beat the chosen one (it is in the top x%).
Rankings and the random networks use the drawn networks only: those added on demand were chosen by
searches, not drawn.
"""

import dataclasses
import io
import itertools
import os
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from pcnas_tf import errors
from pcnas_tf import files
from pcnas_tf import provenance
from pcnas_tf.space import cost
from pcnas_tf.space import nasbench_macro
from pcnas_tf.studies import ground_truth
from pcnas_tf.studies import ground_truth_build

METHODS = ("pcnas", "oneshot_ea", "oneshot_random", "random_alone", "max_flops")
RESULT_FILE = "search_quality_result.json"


# Statistics (checked on constructed inputs with known answers) ----------------------------------------


def ranking(truth_values: Sequence[float], estimate: Sequence[float], fraction: float = 0.1) -> dict:
  """Kendall, Spearman, Kendall within the ground truth's top `fraction`, and the top-10 overlap (the
  share of the truth's 10 best that the estimate also puts in its 10 best)."""
  truth_values, estimate = np.asarray(truth_values, float), np.asarray(estimate, float)
  if len(truth_values) < 3:
    nan = float("nan")
    return {"networks": len(truth_values), "kendall": nan, "spearman": nan, "kendall_top": nan,
            "top10_overlap": nan}
  top = ground_truth.top_fraction(truth_values, fraction)
  k = min(10, len(truth_values))
  overlap = len(set(np.argsort(-truth_values, kind="stable")[:k]) &
                set(np.argsort(-estimate, kind="stable")[:k]))
  return {"networks": len(truth_values), "kendall": ground_truth.kendall(truth_values, estimate),
          "spearman": float(stats.spearmanr(truth_values, estimate).statistic),
          "kendall_top": ground_truth.kendall(truth_values[top], estimate[top]) if len(top) >= 3
                         else float("nan"),
          "top10_overlap": overlap / k}


def regret(feasible_accuracies: Sequence[float], chosen_accuracy: float) -> float:
  """The best feasible accuracy minus the chosen network's (>= 0 when the chosen one is among them)."""
  return float(max(feasible_accuracies) - chosen_accuracy)


def top_percent(feasible_accuracies: Sequence[float], chosen_accuracy: float) -> float:
  """The share (%) of feasible networks strictly better than the chosen one: 0 for the best."""
  values = np.asarray(feasible_accuracies, float)
  return float(100.0 * np.sum(values > chosen_accuracy) / len(values))


def mean_se(values: Sequence[float]) -> tuple[float, float]:
  """Mean and standard error of the mean (NaN standard error for a single value)."""
  values = np.asarray(values, float)
  se = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
  return float(np.mean(values)), se


def random_alone_choice(paths: Sequence, validation: Sequence[float], count: int,
                        rng: np.random.Generator):
  """The best by validation accuracy of `count` paths drawn without replacement (all if fewer)."""
  picked = rng.choice(len(paths), size=min(count, len(paths)), replace=False)
  return paths[max(picked, key=lambda i: (validation[i], -i))]


def max_flops_path(space, is_feasible: Callable, input_shape, num_classes):
  """The feasible path with the most FLOPs (ties: the first in index order); costs add per layer."""
  costs = cost.layer_costs(space, input_shape, False)
  best, best_flops = None, -1
  for path in itertools.product(*[range(len(layer.choices)) for layer in space.layers]):
    flops = sum(costs[i][c].flops for i, c in enumerate(path))
    if flops > best_flops and is_feasible(path):
      best, best_flops = path, flops
  return best


def canonical(path) -> str:
  return nasbench_macro.canonical_key("".join(map(str, path)))


def candidates_to_train(candidates: dict, known: Callable, limit: int, seed: int) -> list:
  """The ranked candidates of one seed (`{"paths", "potentials"}`) that the table lacks and that are
  trained on demand: those with a potential (NaN: infeasible), one path per network, at most `limit`
  of them (a seeded uniform sample; 0: all). Candidates the table holds (`known(path)`) are ranked
  without training, so they are never counted against the limit."""
  missing = {}
  for path, value in zip(candidates["paths"], candidates["potentials"]):
    if np.isfinite(value) and not known(path):
      missing.setdefault(canonical(path), list(path))
  keys = sorted(missing)
  if limit and len(keys) > limit:
    keys = sorted(np.random.default_rng([seed, 17]).choice(keys, limit, replace=False).tolist())
  return [missing[k] for k in keys]


# The study ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """What the study runs. `search` is the base search (its data and width must be the table's);
  `budgets` are budget specs (fractions of the space's latency range); `seeds` seed supergraph
  training and the searches; `ranking_budget`: the budget whose PC-NAS runs rank their candidates."""
  search: object
  budgets: tuple[str, ...] = ("0.25", "0.5", "0.75")
  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
  ranking_budget: str = "0.5"
  train_candidates: bool = True   # False: candidates the table lacks are left out of the ranking
  candidates_trained: int = 0     # at most this many of them trained per seed (0: all)

  def validate(self):
    self.search.validate()
    if not self.budgets or not self.seeds:
      raise errors.UserError("The study needs at least one budget and one seed.")
    errors.check_at_least(self.candidates_trained, 0, "Candidates trained per seed")
    if self.ranking_budget not in self.budgets:
      raise errors.UserError(f"Ranking budget {self.ranking_budget!r} is not one of the budgets "
                             f"{', '.join(self.budgets)}.")
    return self


def run_study(config: StudyConfig, table_path: str, work_dir: str, add_networks: Callable,
              progress=True) -> dict:
  """Runs (or resumes: every search and training resumes in `work_dir`) the study; returns the
  result, also written to `work_dir/search_quality_result.json`.

  `add_networks(paths)` trains the given networks alone with the table's schedule and adds them to
  the table at `table_path` (a no-op for those it holds).
  """
  from pcnas_tf.searcher import loop as search_lib  # pylint: disable=g-import-not-at-top
  from pcnas_tf.studies import ablation  # pylint: disable=g-import-not-at-top
  from pcnas_tf.studies import rank_check  # pylint: disable=g-import-not-at-top
  from pcnas_tf.searcher import potential as potential_lib  # pylint: disable=g-import-not-at-top

  config.validate()
  ground_truth_build.check_matches(table_path, config.search)
  files.make_dir(work_dir)
  runs, oneshot_rankings, candidates = [], [], []
  space = ground_truth.load(table_path).space
  # The search's K validation batches depend on the data config alone, not on the seed: loaded once.
  batches = rank_check.validation_batches(config.search, space)
  for seed in config.seeds:
    base = dataclasses.replace(config.search, seed=seed)
    first = None
    for budget in config.budgets:
      for method in ("ea", "random"):
        run = dataclasses.replace(base, training="oneshot", search=method, budget=budget)
        directory = os.path.join(work_dir, f"seed{seed}", f"oneshot_{method}_b{budget}")
        if first is None:
          found = search_lib.run_search(run, directory, progress=progress)
          first = (directory, found)
        else:
          ablation.share_oneshot_training(first[0], directory, run)
          found = search_lib.run_search(run, directory, progress=progress)
        runs.append(_run_record(f"oneshot_{method}", seed, budget, found))
      pcnas = dataclasses.replace(base, training="pcnas", search="pcnas", budget=budget)
      found = search_lib.run_search(pcnas, os.path.join(work_dir, f"seed{seed}", f"pcnas_b{budget}"),
                                    progress=progress)
      runs.append(_run_record("pcnas", seed, budget, found))
      if budget == config.ranking_budget:
        last = found["intervals"][-1]
        candidates.append({"seed": seed, "paths": last["candidates"], "potentials": last["potentials"]})
    # The One-Shot supergraph's accuracy over every network of the table, in both BN modes.
    truth = ground_truth.load(table_path)
    directory, found = first
    supergraph = rank_check.load_supergraph(directory, truth.space, found["input_shape"],
                                            found["num_classes"])
    paths = truth.paths(drawn_only=True)  # a uniform sample: not the networks searches chose
    oneshot_rankings.append({"seed": seed, "paths": [list(p) for p in paths], **{
        mode: rank_check.supergraph_accuracies(supergraph, batches, paths, mode)
        for mode in potential_lib.BN_MODES}})
  # Every chosen network and every ranked candidate gets its ground truth.
  wanted = [r["path"] for r in runs]
  if config.train_candidates:
    truth = ground_truth.load(table_path)
    for c in candidates:
      wanted += candidates_to_train(c, lambda p: truth.entry(p) is not None, config.candidates_trained,
                                    c["seed"])
  feasibility = _feasibility(config)
  wanted += [f["max_flops"] for f in feasibility.values()]
  add_networks(sorted({canonical(p) for p in wanted}))
  truth = ground_truth.load(table_path)
  result = judge(config, truth, runs, oneshot_rankings, candidates, feasibility,
                 supergraph_steps=_supergraph_steps(config.search, truth.space))
  result.update({"table": truth.name, "config": _config_json(config), "versions": provenance.versions()})
  files.write_json(os.path.join(work_dir, RESULT_FILE), result)
  return result


def _run_record(method, seed, budget, found) -> dict:
  return {"method": method, "seed": seed, "budget": budget, "path": _indices(found),
          "potential": found["chosen"]["potential"],
          "predicted_latency_ms": found["chosen"].get("predicted_latency_ms"),
          "budget_ms": found["constraint"]["budget"], "timings": found["timings"]}


def _indices(found) -> list[int]:
  from pcnas_tf.space import search_space as space_lib  # pylint: disable=g-import-not-at-top
  space = space_lib.SearchSpace.from_json(found["space"])
  return list(space.indices(found["chosen"]["arch"]))


def _feasibility(config: StudyConfig) -> dict:
  """Per (seed, budget): the resolved budget, a feasibility test (that seed's searches' own constraint:
  the latency table's calibration networks are drawn with the search's seed) and the feasible network
  with the most FLOPs."""
  from pcnas_tf.constraints import constraint as constraint_lib  # pylint: disable=g-import-not-at-top
  from pcnas_tf.space import search_space as space_lib  # pylint: disable=g-import-not-at-top
  space = space_lib.get_space(config.search.space, config.search.width)
  data = config.search.data
  shape, num_classes = (data.resolution, data.resolution, data.channels), 10
  out = {}
  for seed in config.seeds:
    for budget in config.budgets:
      run = dataclasses.replace(config.search, budget=budget, seed=seed)
      constraint = constraint_lib.build(space, shape, num_classes, run, progress=False)
      out[seed, budget] = {"budget": constraint.budget, "unit": constraint.unit,
                           "is_feasible": constraint.sampler.is_feasible,
                           "max_flops": list(max_flops_path(space, constraint.sampler.is_feasible, shape,
                                                            num_classes))}
  return out


def _supergraph_steps(search, space) -> int:
  return (search.warmup_epochs + space.num_layers * search.interval_epochs) * search.steps_per_epoch


def judge(config: StudyConfig, truth, runs: list, oneshot_rankings: list, candidates: list,
          feasibility: dict, supergraph_steps: int) -> dict:
  """The study's figures from its runs and the table (which holds every network named in them)."""
  paths = truth.paths()
  accuracy = {p: truth.entry(p).accuracy for p in paths}
  validation = {p: truth.entry(p).validation for p in paths}
  # Rankings ---------------------------------------------------------------------------------------
  rankings = {}
  for mode in ("batch", "moving"):
    per_seed = [ranking([accuracy[truth.canonical(p)] for p in r["paths"]], r[mode])
                for r in oneshot_rankings]
    rankings[f"oneshot_{mode}"] = _mean_rows(per_seed)
  per_seed = []
  for c in candidates:
    seen = {}
    for path, value in zip(c["paths"], c["potentials"]):
      if np.isfinite(value) and truth.entry(path) is not None:  # NaN: infeasible, no potential
        seen.setdefault(truth.canonical(path), value)  # a network once, as the table counts it
    keys = sorted(seen)
    per_seed.append(ranking([accuracy[k] for k in keys], [seen[k] for k in keys]))
  rankings["pcnas_potentials"] = _mean_rows(per_seed)
  # Searches ---------------------------------------------------------------------------------------
  table_steps = truth.steps
  alone_count = max(1, supergraph_steps // table_steps) if table_steps else 1
  rows = []
  for budget in config.budgets:
    for seed in config.seeds:
      feasible = [p for p in paths if feasibility[seed, budget]["is_feasible"](p)]
      if not any(truth.entry(p).drawn for p in feasible):
        raise errors.UserError(f"No drawn network of the table fits budget {budget}; the study cannot "
                               f"judge it.")
      feasible_acc = [accuracy[p] for p in feasible]  # the best known, added networks included
      drawn = [p for p in feasible if truth.entry(p).drawn]  # a uniform sample of the feasible ones
      drawn_acc = [accuracy[p] for p in drawn]
      chosen = {r["method"]: truth.canonical(r["path"]) for r in runs
                if r["budget"] == budget and r["seed"] == seed}
      rng = np.random.default_rng([seed, int(float(budget) * 1000)])
      chosen["random_alone"] = random_alone_choice(drawn, [validation[p] for p in drawn],
                                                   alone_count, rng)
      chosen["max_flops"] = truth.canonical(feasibility[seed, budget]["max_flops"])
      for method in METHODS:
        path = chosen[method]
        value = accuracy[path]
        rows.append({"method": method, "budget": budget, "seed": seed, "path": list(path),
                     "arch": "".join(map(str, path)), "test_top1": value,
                     "regret": regret(feasible_acc, value), "top_percent": top_percent(drawn_acc, value),
                     "feasible_in_table": len(feasible), "feasible_drawn": len(drawn), "budget_value": feasibility[seed, budget]["budget"]})
  summary = {}
  for method in METHODS:
    regrets = [r["regret"] for r in rows if r["method"] == method]
    mean, se = mean_se(regrets)
    summary[method] = {"regret": mean, "regret_se": se,
                       "top_percent": float(np.mean([r["top_percent"] for r in rows
                                                     if r["method"] == method])),
                       "per_budget": {b: mean_se([r["regret"] for r in rows
                                                  if r["method"] == method and r["budget"] == b])[0]
                                      for b in config.budgets}}
  return {"rankings": rankings, "rows": rows, "summary": summary, "random_alone_networks": alone_count,
          "supergraph_steps": supergraph_steps, "table_steps": table_steps,
          "budgets": {f"seed {seed}, budget {b}": {"budget": f["budget"], "unit": f["unit"],
                                                   "max_flops": f["max_flops"]}
                      for (seed, b), f in feasibility.items()},
          "candidates": candidates, "oneshot": oneshot_rankings, "runs": runs}


def _mean_rows(rows: list) -> dict:
  """The mean of each statistic over seeds, with the standard error of Kendall's tau."""
  if not rows:
    return {}
  out = {key: float(np.nanmean([r[key] for r in rows])) if any(np.isfinite(r[key]) for r in rows)
         else float("nan") for key in rows[0]}
  out["kendall_se"] = mean_se([r["kendall"] for r in rows])[1]
  out["seeds"] = len(rows)
  return out


def _config_json(config: StudyConfig) -> dict:
  return {"search": config.search.to_json(), "budgets": list(config.budgets), "seeds": list(config.seeds),
          "ranking_budget": config.ranking_budget, "train_candidates": config.train_candidates,
          "candidates_trained": config.candidates_trained}


# The picture ----------------------------------------------------------------------------------------


def plot(result: dict, truth, proxies: dict, path: str) -> None:
  """Ground truth against each estimate (a panel each) and the regret per method and budget."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = []
  first = result["oneshot"][0]
  for mode in ("batch", "moving"):
    panels.append((f"One-Shot accuracy ({mode} BN), seed {first['seed']}", first["paths"], first[mode]))
  pcnas_paths, pcnas_values = [], []
  for c in result["candidates"]:
    for p, v in zip(c["paths"], c["potentials"]):
      if np.isfinite(v) and truth.entry(p) is not None:
        pcnas_paths.append(p)
        pcnas_values.append(v)
  panels.append(("PC-NAS potential, last interval (all seeds)", pcnas_paths, pcnas_values))
  for name in ("flops", "depth", "synflow", "naswot"):
    panels.append((name, *proxies[name]))
  columns = 4
  rows = (len(panels) + 1 + columns - 1) // columns
  figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.4 * rows))
  axes = axes.ravel()
  for axis, (title, paths, values) in zip(axes, panels):
    truth_values = [truth.entry(p).accuracy for p in paths]
    axis.scatter(values, truth_values, s=8, alpha=0.6)
    tau = ranking(truth_values, values)["kendall"] if len(paths) >= 3 else float("nan")
    axis.set_title(f"{title}\nKendall {tau:.2f} ({len(paths)} networks)", fontsize=9)
    axis.set_ylabel("ground truth test top-1 (%)", fontsize=8)
    axis.tick_params(labelsize=7)
  axis = axes[len(panels)]
  budgets = list(next(iter(result["summary"].values()))["per_budget"])
  width = 0.8 / len(result["summary"])
  for index, (method, row) in enumerate(result["summary"].items()):
    means, errs = [], []
    for budget in budgets:
      values = [r["regret"] for r in result["rows"] if r["method"] == method and r["budget"] == budget]
      mean, se = mean_se(values)
      means.append(mean)
      errs.append(0 if not np.isfinite(se) else se)
    axis.bar(np.arange(len(budgets)) + index * width, means, width, yerr=errs, label=method, capsize=2)
  axis.set_xticks(np.arange(len(budgets)) + 0.4 - width / 2, [f"budget {b}" for b in budgets], fontsize=8)
  axis.set_ylabel("regret (points of test top-1)", fontsize=8)
  axis.set_title("regret per method and budget (mean, se)", fontsize=9)
  axis.legend(fontsize=7)
  for axis in axes[len(panels) + 1:]:
    axis.axis("off")
  figure.tight_layout()
  files.make_dir(os.path.dirname(files.absolute(path)))
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=110)
  plt.close(figure)
  files.write_bytes(path, buffer.getvalue())
