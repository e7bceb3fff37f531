"""Benchmark: the search on two worker processes (MultiWorkerMirroredStrategy on 127.0.0.1), and a kill.

  .venv/bin/python -m bench.multiworker [--work_dir DIR]

Runs the two local scenarios of pcnas_tf/cluster_test.py on the tiny macro-style search
(`testing.tiny_search_config`, CPU, loopback ports only, every run bounded by a timeout):

  1. one process with two replicas (two logical CPUs, MirroredStrategy), then two worker processes with
     one replica each and the same seed and global batch: do they train the same paths and end with the
     same final pool (potentials included)?
  2. two workers again, the second killed (SIGKILL) once checkpoint 3 exists: does the survivor stop
     instead of hanging, and does the restarted cluster finish with the uninterrupted run's pool and paths?

  3. bench.multiworker_eval's four searches: potentials scored in one process, by one evaluation
     worker, by two, and by two of which one is killed (`evaluation_speedup`, `eval_pools_equal`,
     `eval_worker_kill_recovered`).
  4. bench.multiworker_eval's scaling runs, every process one thread pinned to its own core: the
     evaluation time of one process against two training tasks sharing it (`train_eval_speedup_2`),
     and of one evaluation worker against two (`eval_worker_speedup_2`), pools equal; then what two
     cores give two independent copies of that evaluation here (`parallel_ceiling_2`), and each
     speed-up as a share of it (`train_eval_share_of_ceiling`, `eval_worker_share_of_ceiling`).
  5. bench.eval_simulation in its own process: 1 to 64 simulated evaluation workers against the real
     chief (`sim_efficiency_8/32/64`, `oracle_ms_per_trial`).
  6. the tiny search, retraining and export with every directory on `ram://` (tests/ram_fs_test.py's
     end-to-end test, run as a subprocess: `ram_fs_search_ok`).

Prints the figures, then one JSON line. Wall times include each process' TensorFlow start-up and tracing,
which dominate a search this small; two processes share this machine's cores, so they show correctness
and recovery, not speed-up.
"""

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench import multiworker_eval
from tests import helpers as testing

KILL_AFTER_CHECKPOINT = 3  # mid interval 1 of the tiny search


def _same(a, b) -> bool:
  return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN potentials compare equal


def _run(root):
  config = testing.tiny_search_config(root)
  multi = dataclasses.replace(config, strategy="multi_worker")

  start = time.monotonic()
  single = testing.run_search_process(dataclasses.replace(config, strategy="mirrored"),
                                      os.path.join(root, "single"))
  single_s = time.monotonic() - start
  run = testing.run_search_cluster(multi, os.path.join(root, "multi"), os.path.join(root, "logs"))
  if run.codes != [0, 0]:
    raise SystemExit(f"two-worker search failed: {run.codes}\n{run.logs}")
  chief, worker = run.results
  paths_agree = chief["paths_digest"] == worker["paths_digest"] == single["paths_digest"]
  pools_equal = _same(chief["final_pool"], single["final_pool"]) and _same(chief["final_pool"],
                                                                           worker["final_pool"])
  print(f"one process, 2 replicas: {single_s:.1f} s; 2 workers: {run.finished_s:.1f} s")
  print(f"paths agree (2 workers and 1 process): {paths_agree}; final pools equal: {pools_equal}")

  killed_dir = os.path.join(root, "killed")
  killed = testing.run_search_cluster(multi, killed_dir, os.path.join(root, "killed_logs"),
                                      kill_after_checkpoint=KILL_AFTER_CHECKPOINT)
  survivor_stopped = killed.codes[0] == 2 and "lost contact with the cluster" in killed.logs
  restarted = testing.run_search_cluster(multi, killed_dir, os.path.join(root, "restarted_logs"))
  recovered = survivor_stopped and restarted.codes == [0, 0] and all(
      r["paths_digest"] == chief["paths_digest"] and _same(r["final_pool"], chief["final_pool"])
      for r in restarted.results)
  stop_s = killed.finished_s - killed.killed_at_s
  print(f"worker 1 killed after checkpoint {KILL_AFTER_CHECKPOINT} at {killed.killed_at_s:.1f} s; the "
        f"chief stopped {stop_s:.1f} s later (exit codes {killed.codes})")
  print(f"restarted cluster finished in {restarted.finished_s:.1f} s; same paths and pool as the "
        f"uninterrupted run: {recovered}")
  return {
      "workers": 2, "pools_equal": pools_equal, "paths_agree": paths_agree,
      "worker_kill_recovered": recovered, "single_process_2_replicas_s": round(single_s, 1),
      "two_workers_s": round(run.finished_s, 1), "kill_after_s": round(killed.killed_at_s, 1),
      "survivor_stopped_after_kill_s": round(stop_s, 1),
      "restart_to_finish_s": round(restarted.finished_s, 1)}


def _simulation(quick):
  """bench.eval_simulation's figures (its own process: it loads keras-tuner without TensorFlow)."""
  done = subprocess.run([sys.executable, "-m", "bench.eval_simulation", *(["--quick"] if quick else [])],
                        cwd=testing.REPO, capture_output=True, text=True, timeout=900)
  print(done.stdout.rstrip())
  if done.returncode != 0:
    raise SystemExit(f"bench.eval_simulation failed:\n{done.stderr[-3000:]}")
  figures = json.loads(done.stdout.strip().splitlines()[-1])
  keep = ("sim_efficiency_8", "sim_efficiency_32", "sim_efficiency_64", "oracle_ms_per_trial",
          "oracle_grpc_ms_per_trial", "sim_pools_equal", "sim_scored_once")
  return {key: figures[key] for key in keep}


def _ram_fs_search_ok():
  """Whether the ram:// end-to-end test (search, retraining, export, every directory on ram://) passes."""
  done = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/ram_fs_test.py", "-k",
                         "search_retraining_and_export"], cwd=testing.REPO, capture_output=True, text=True,
                        timeout=900)
  return done.returncode == 0 and " passed" in done.stdout


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--work_dir", default=None, help="Where the runs go (default: a temporary dir).")
  parser.add_argument("--quick", action="store_true", help="The simulation's quick run (under a minute).")
  args = parser.parse_args()
  root = args.work_dir or tempfile.mkdtemp(prefix="bench_multiworker_")
  os.makedirs(root, exist_ok=True)
  try:
    figures = _run(root)
    print("Evaluation workers (bench.multiworker_eval):")
    evaluation = multiworker_eval.run(os.path.join(root, "evaluation"))
    figures.update({key: value for key, value in evaluation.items() if key != "workers"})
    print("Scaling, one core per process (bench.multiworker_eval.scaling):")
    figures.update(multiworker_eval.scaling(os.path.join(root, "scaling")))
    print("Simulated evaluation workers (bench.eval_simulation):")
    figures.update(_simulation(args.quick))
    figures["ram_fs_search_ok"] = _ram_fs_search_ok()
    print(f"search, retraining and export on ram://: {figures['ram_fs_search_ok']}")
    print(json.dumps(figures))
  finally:
    if not args.work_dir:
      shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  main()
