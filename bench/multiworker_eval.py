"""Benchmark: potential evaluation by a pool of workers on 127.0.0.1, against one process.

  .venv/bin/python -m bench.multiworker_eval

Runs the same tiny search (pcnas_tf.testing's tiny space and Fashion-MNIST slice, with a larger pool and
more completions so that scoring, not start-up, dominates the evaluation phase) four times:
  1. in one process (potentials scored locally),
  2. as keras-tuner chief with one evaluation worker,
  3. with two evaluation workers,
  4. with two workers after a worker took the first trial and died before it reported (`lost_trial`).
Reports each run's evaluation time (the chief's `eval_s`: from opening an interval to its pool update,
summed; with workers it includes their start-up when the first trial comes before they are ready) and
wall time, `evaluation_speedup` (one worker's eval_s / two workers'), `eval_pools_equal` (every run's
final pool and interval potentials equal the one-process run's), and `eval_worker_kill_recovered`
(run 4 finished, with an expired lease and every trial scored once). On this machine's two shared
cores, two worker processes compete with each other and the chief: the speedup says little about
machines with an accelerator each. Ends with one JSON line.
"""

import dataclasses
import json
import os
import subprocess
import tempfile
import time

from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.space import search_space as space_lib
from tests import helpers as testing

SCALING_SAMPLES = 300  # completions per candidate in the scaling runs: 4 x 3 x 300 per interval


def _config(root):
  return dataclasses.replace(testing.tiny_search_config(root), pool_size=4, num_samples=120,
                             eval_batches=2)


def _same_pool(result, reference):
  return result is not None and result["final_pool"] == reference["final_pool"] and json.dumps(
      result["intervals"], sort_keys=True) == json.dumps(
          json.loads(json.dumps(reference["intervals"])), sort_keys=True)


def run(root) -> dict:
  """Runs the four searches under `root`, prints a line each, and returns the figures."""
  os.makedirs(root, exist_ok=True)
  config = _config(root)
  start = time.monotonic()
  reference = search_lib.run_search(config, os.path.join(root, "local"), progress=False)
  runs = {"one_process": {"result": reference, "wall_s": time.monotonic() - start}}
  for name, workers, kill in (("one_worker", 1, False), ("two_workers", 2, False),
                              ("two_workers_one_killed", 2, True)):
    runs[name] = testing.run_served_search(config, os.path.join(root, name), workers,
                                           lease_timeout=5.0, lost_trial=kill)
  eval_s = {name: round(run["result"]["timings"]["eval_s"], 3) if run["result"] else None
            for name, run in runs.items()}
  for name, run in runs.items():
    print(f"{name:>24}: evaluation {eval_s[name] or float('nan'):7.2f} s, wall {run['wall_s']:7.2f} s")
  killed = runs["two_workers_one_killed"]["result"]
  remote = killed["remote_evaluation"] if killed else {}
  return {
      "workers": 2,
      "eval_pools_equal": all(_same_pool(run["result"], reference) for run in runs.values()),
      "eval_worker_kill_recovered": bool(killed) and remote["expired_leases"] >= 1
                                    and remote["scored"] == remote["trials"],
      "evaluation_speedup": (round(eval_s["one_worker"] / eval_s["two_workers"], 3)
                             if eval_s["one_worker"] and eval_s["two_workers"] else None),
      "eval_s": eval_s,
      "wall_s": {name: round(run["wall_s"], 3) for name, run in runs.items()},
      "cpu_count": os.cpu_count(),
  }


def _scaling_config(root):
  """Eight mixops of three operators at 8x8 (6,561 paths, so completions rarely repeat), P = 4, S = 300:
  scoring, not start-up or tracing, is most of an interval's evaluation."""
  choices = ("Identity", "MBConv_3_3", "MBConv_6_5")
  layers = tuple(space_lib.LayerSpec(8 if i < 4 else 16, 2 if i == 4 else 1, choices) for i in range(8))
  path = os.path.join(root, "scaling_space.json")
  with open(path, "w") as f:
    json.dump(space_lib.SearchSpace("scaling", 8, 1, None, layers, 16, "relu").to_json(), f)
  return dataclasses.replace(testing.tiny_search_config(root), space=path, pool_size=4,
                             num_samples=SCALING_SAMPLES, budget="0.8")


def _start_one_process(config, work_dir, logical_cpus, core=0):
  """Starts the search in one process of one thread on `core` (`logical_cpus` replicas); its output goes
  to `work_dir`.log (a pipe left unread while the other copy runs could fill and stall it)."""
  with open(f"{work_dir}.log", "w") as log:  # the child keeps its own descriptor
    return subprocess.Popen(testing.search_task_argv(config, work_dir, f"{work_dir}.json", logical_cpus),
                            cwd=testing.REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **testing.ONE_THREAD, "PCNAS_PIN_TASKS": str(core + 1)})


def _finish(process, work_dir):
  """Waits for a search of `_start_one_process`; its result summary."""
  process.wait(timeout=testing.CLUSTER_TIMEOUT_S)
  if process.returncode != 0:
    with open(f"{work_dir}.log") as log:
      raise RuntimeError(f"one-process search failed:\n{log.read()[-4000:]}")
  return testing.read_json(f"{work_dir}.json")


def _one_process(config, work_dir, logical_cpus):
  """The search in one process of one thread on core 0 (`logical_cpus` replicas); its result summary."""
  return _finish(_start_one_process(config, work_dir, logical_cpus), work_dir)


def _searches(config, root, round_index):
  """One round of the scaling searches: {name: [result summary, ...]} (two for the side-by-side copies)."""
  at = lambda name: os.path.join(root, f"{name}_{round_index}")
  runs = {"one_process": [_one_process(dataclasses.replace(config, strategy="mirrored"), at("one_process"),
                                       logical_cpus=2)]}
  run = testing.run_search_cluster(dataclasses.replace(config, strategy="multi_worker"), at("two_tasks"),
                                   at("two_tasks_logs"), pinned=True)
  if run.codes != [0, 0]:
    raise RuntimeError(f"two-task search failed: {run.codes}\n{run.logs[-3000:]}")
  runs["two_training_tasks"] = [run.results[0]]
  for name, workers in (("one_eval_worker", 1), ("two_eval_workers", 2)):
    served = testing.run_served_search(config, at(name), workers, lease_timeout=60.0, pinned=True)
    if served["result"] is None:
      raise RuntimeError(f"{name} failed:\n{served['logs']['chief'][-3000:]}")
    runs[name] = [served["result"]]
  # No distribution at all: the served searches' config (one replica) alone on core 0, then two copies
  # at once on cores 0 and 1.
  runs["alone"] = [_one_process(config, at("alone"), logical_cpus=1)]
  dirs = [at(f"side_by_side_{core}") for core in (0, 1)]
  processes = [_start_one_process(config, d, 1, core) for core, d in enumerate(dirs)]
  runs["side_by_side"] = [_finish(p, d) for p, d in zip(processes, dirs)]
  return runs


def scaling(root, rounds=2) -> dict:
  """Evaluation time with one and two scorers, every process one thread pinned to its own core: the
  search in one process against two training tasks sharing the scoring (`train_eval_speedup_2`), and
  one evaluation worker against two (`eval_worker_speedup_2`); and what two cores give two copies of the
  same evaluation with no distribution at all (`parallel_ceiling_2`: 2 x one copy alone over the mean
  of two side by side), the most any two scorers can reach here (shared cache and memory bandwidth, and
  whatever the host runs beside this machine).

  Each figure sums, over the intervals but the first (whose time holds the evaluation workers' start-up
  and the tracing), the least of that interval's evaluation time over `rounds` interleaved rounds: one
  interval scores in about a second here, and a single run's figure moves by 15%. The one process trains
  with two replicas (two logical CPUs), as the two tasks do, so its pool must equal theirs; the served
  and undistributed searches train with one, so theirs are compared with each other.
  """
  os.makedirs(root, exist_ok=True)
  config = _scaling_config(root)
  runs = {}
  for round_index in range(rounds):
    for name, results in _searches(config, root, round_index).items():
      runs.setdefault(name, []).append(results)
  # runs[name][round][copy]: per copy, the least time of each interval over the rounds, summed.
  least = {name: [sum(min(r[copy]["interval_eval_s"][i] for r in by_round)
                      for i in range(1, len(by_round[0][copy]["interval_eval_s"])))
                  for copy in range(len(by_round[0]))] for name, by_round in runs.items()}
  eval_s = {name: round(sum(times) / len(times), 3) for name, times in least.items()}
  texts = lambda *names: {json.dumps({k: r[k] for k in ("final_pool", "intervals")}, sort_keys=True)
                          for n in names for by_copy in runs[n] for r in by_copy}
  pools_equal = (len(texts("one_process", "two_training_tasks")) == 1
                 and len(texts("one_eval_worker", "two_eval_workers", "alone", "side_by_side")) == 1)
  for name, seconds in eval_s.items():
    print(f"{name:>20}: evaluation of intervals 2-8 {seconds:7.2f} s (least of {rounds} per interval)")
  ceiling = round(2 * eval_s["alone"] / eval_s["side_by_side"], 3)
  print(f"two undistributed copies side by side: {[round(t, 2) for t in least['side_by_side']]} s "
        f"against {eval_s['alone']} s alone, so two cores give at most {ceiling}x here")
  print(f"pools and potentials equal (one process and two tasks; one and two evaluation workers, and "
        f"the undistributed copies): {pools_equal}")
  figures = {"train_eval_speedup_2": round(eval_s["one_process"] / eval_s["two_training_tasks"], 3),
             "eval_worker_speedup_2": round(eval_s["one_eval_worker"] / eval_s["two_eval_workers"], 3),
             "parallel_ceiling_2": ceiling, "scaling_pools_equal": pools_equal, "scaling_eval_s": eval_s,
             "scaling_rounds": rounds}
  for name in ("train_eval", "eval_worker"):
    figures[f"{name}_share_of_ceiling"] = round(figures[f"{name}_speedup_2"] / ceiling, 3)
  return figures


def main():
  with tempfile.TemporaryDirectory() as root:
    print(json.dumps(run(root), sort_keys=True))


if __name__ == "__main__":
  main()
