"""Benchmark: potential evaluation by a pool of workers on 127.0.0.1, against one process.

  .venv/bin/python -m bench.multiworker_eval

Runs the same tiny search (pcnas_tf.testing's tiny space and Fashion-MNIST slice, with a larger pool and
more completions so that scoring, not start-up, dominates the evaluation phase) four times:
  1. in one process (potentials scored locally),
  2. as keras-tuner chief with one evaluation worker,
  3. with two evaluation workers,
  4. with two workers, the one that takes the first trial killed before it reports.
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
import tempfile
import time

from pcnas_tf.searcher import loop as search_lib
from tests import helpers as testing


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
                                           lease_timeout=5.0, kill_first_scorer=kill)
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


def main():
  with tempfile.TemporaryDirectory() as root:
    print(json.dumps(run(root), sort_keys=True))


if __name__ == "__main__":
  main()
