"""NAS-Bench-Macro study: PC-NAS' pool search against EA and random search under FLOPs budgets.

The table's mean accuracy is the oracle, optionally with Gaussian noise on every evaluation to mimic the
error of weight-sharing estimates. For each FLOPs budget (percentiles of the table's FLOPs) and noise level,
every seed runs the three searches; EA and random search get exactly as many evaluations as the pool
search spent in that seed. Regret is the best feasible mean accuracy minus the found architecture's true
mean accuracy; rank is the found network's percentile among the distinct feasible networks.

  .venv/bin/python -m bench.macro_search            # 100 seeds per setting, about a minute on 1 core
  .venv/bin/python -m bench.macro_search --quick    # 10 seeds, seconds
"""

import argparse
import dataclasses
import json
import time

import numpy as np

from pcnas_tf.searcher import baselines as evolution
from pcnas_tf.space import nasbench_macro
from pcnas_tf.constraints import sampling

METHODS = ("pcnas", "ea", "random")


@dataclasses.dataclass(frozen=True)
class Setting:
  """One budget and noise level, with the ground truth its figures are measured against."""
  percentile: float
  budget: int
  noise: float
  sampler: sampling.FeasibleSampler
  feasible_accuracies: np.ndarray  # one per distinct feasible network, sorted


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--table", default=None, help="nas-bench-macro_cifar10.json (default: shared copy)")
  parser.add_argument("--seeds", type=int, default=100)
  parser.add_argument("--quick", action="store_true", help="10 seeds")
  parser.add_argument("--pool-size", type=int, default=5, help="P, as the paper")
  parser.add_argument("--samples", type=int, default=4, help="S, completions per candidate")
  parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.5],
                      help="sigma of Gaussian evaluation noise, accuracy points")
  parser.add_argument("--percentiles", type=float, nargs="+", default=[25, 50, 75],
                      help="FLOPs budgets as percentiles of the table's FLOPs")
  args = parser.parse_args(argv)
  if args.quick:
    args.seeds = 10
  return args


def make_setting(bench: nasbench_macro.MacroBench, percentile: float, noise: float) -> Setting:
  budget = int(np.percentile([e.flops for e in bench.entries.values()], percentile))
  sampler = sampling.FeasibleSampler(bench.flops_costs, budget)
  # Count each network once: Identity-position duplicates would weight some networks several times.
  networks = {nasbench_macro.canonical_key(bench.key(p)): e.mean_acc
              for p, e in bench.entries.items() if sampler.is_feasible(p)}
  return Setting(percentile, budget, noise, sampler, np.sort(np.fromiter(networks.values(), float)))


def make_evaluate(bench: nasbench_macro.MacroBench, noise: float, rng: np.random.Generator):
  def evaluate(path):
    return bench.accuracy(path) + (noise * rng.normal() if noise else 0.0)
  return evaluate


def rank_percentile(accuracies: np.ndarray, accuracy: float) -> float:
  """The percentile of `accuracy` in sorted `accuracies`, ties counted half (100: the best)."""
  below = np.searchsorted(accuracies, accuracy, side="left")
  not_above = np.searchsorted(accuracies, accuracy, side="right")
  return 100.0 * (below + not_above) / 2 / len(accuracies)


def run_seed(bench, setting: Setting, seed: int, pool_size: int, samples: int) -> dict:
  """The three searches of one seed; each method has its own search and noise streams."""
  streams = {m: np.random.default_rng([seed, int(setting.percentile * 10), int(setting.noise * 1000), i])
             for i, m in enumerate(METHODS)}
  evaluates = {m: make_evaluate(bench, setting.noise, streams[m]) for m in METHODS}
  outcomes = {"pcnas": evolution.progressive_search(setting.sampler, evaluates["pcnas"], streams["pcnas"],
                                                   pool_size, samples)}
  budget_evals = outcomes["pcnas"].evaluations
  outcomes["ea"] = evolution.evolutionary_search(setting.sampler, evaluates["ea"], budget_evals,
                                                 streams["ea"], population=pool_size)
  outcomes["random"] = evolution.random_search(setting.sampler, evaluates["random"], budget_evals,
                                               streams["random"])
  best = setting.feasible_accuracies[-1]
  result = {"evaluations": budget_evals}
  for method, outcome in outcomes.items():
    assert setting.sampler.is_feasible(outcome.best_arch) and outcome.evaluations == budget_evals
    found = bench.accuracy(outcome.best_arch)
    result[method] = (best - found, rank_percentile(setting.feasible_accuracies, found), found == best)
  return result


def run_setting(bench, setting: Setting, seeds: int, pool_size: int, samples: int) -> dict:
  """Per-method mean regret, mean rank percentile and hit rate of the best network over `seeds` seeds."""
  runs = [run_seed(bench, setting, seed, pool_size, samples) for seed in range(seeds)]
  figures = {"flops_percentile": setting.percentile, "flops_budget": setting.budget, "noise": setting.noise,
             "feasible_networks": len(setting.feasible_accuracies),
             "best_feasible_acc": round(float(setting.feasible_accuracies[-1]), 3),
             "evaluations_mean": float(np.mean([r["evaluations"] for r in runs]))}
  for method in METHODS:
    regret, rank, hit = (np.array([r[method][i] for r in runs], float) for i in range(3))
    figures[f"{method}_regret"] = round(float(regret.mean()), 4)
    figures[f"{method}_regret_se"] = round(float(regret.std(ddof=1) / np.sqrt(len(runs))), 4)
    figures[f"{method}_percentile"] = round(float(rank.mean()), 3)
    figures[f"{method}_hit_rate"] = round(float(hit.mean()), 3)
  figures["evaluations_range"] = [min(r["evaluations"] for r in runs), max(r["evaluations"] for r in runs)]
  return figures


def print_table(rows: list[dict]) -> None:
  print(f"{'FLOPs pct':>9} {'budget M':>8} {'noise':>5} {'feasible':>8} {'evals':>6} | "
        + " | ".join(f"{m + ' regret':>17} {'rank':>6} {'hit':>5}" for m in METHODS))
  for row in rows:
    cells = " | ".join(f"{row[m + '_regret']:>8.3f} +- {row[m + '_regret_se']:.3f} "
                       f"{row[m + '_percentile']:>6.2f} {row[m + '_hit_rate']:>5.2f}" for m in METHODS)
    print(f"{row['flops_percentile']:>9g} {row['flops_budget'] / 1e6:>8.2f} {row['noise']:>5g} "
          f"{row['feasible_networks']:>8} {row['evaluations_mean']:>6.0f} | {cells}")


def summary(args, rows: list[dict], seconds: float) -> dict:
  result = {"seeds": args.seeds, "pool_size": args.pool_size, "samples": args.samples,
            "noise": args.noise, "budgets_flops": sorted({r["flops_budget"] for r in rows}),
            "evaluations_per_run": evolution.progressive_evaluations((3,) * 8, args.pool_size, args.samples),
            "evaluations_per_run_observed": [min(r["evaluations_range"][0] for r in rows),
                                             max(r["evaluations_range"][1] for r in rows)]}
  for method in METHODS:
    for figure in ("regret", "percentile", "hit_rate"):
      result[f"{method}_{figure}"] = round(float(np.mean([r[f"{method}_{figure}"] for r in rows])), 4)
  result.update(seconds=round(seconds, 1), settings=rows)
  return result


def main(argv=None) -> None:
  args = parse_args(argv)
  start = time.time()
  bench = nasbench_macro.load(args.table)
  rows = [run_setting(bench, make_setting(bench, pct, noise), args.seeds, args.pool_size, args.samples)
          for pct in args.percentiles for noise in args.noise]
  print(f"NAS-Bench-Macro, P={args.pool_size}, S={args.samples}, {args.seeds} seeds per setting; regret in "
        f"accuracy points (lower is better), rank = percentile among distinct feasible networks "
        f"(100 = best), hit = found the best feasible network.")
  print_table(rows)
  print(json.dumps(summary(args, rows, time.time() - start)))


if __name__ == "__main__":
  main()
