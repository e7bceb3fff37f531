"""Benchmark: many simulated evaluation workers against the real chief and Oracle, over loopback gRPC.

  .venv/bin/python -m bench.eval_simulation [--quick]

The chief is a real `PCNASOracle` (21 mixops of N=10 operators, a pool of P=5: P x N = 50 candidates an
interval, S=900 completions each, `trial_completions` a trial) served by `remote_eval.serving` on
127.0.0.1. A made-up completer draws each candidate's S paths from its key alone. The workers are real
`remote_eval.Worker` loops whose evaluator, instead of running a supergraph, sleeps `per_completion_s`
per completion and counts a known function of each path (`correct_of`) out of `BATCH` images; W of
them run as threads spread over a few processes (sleep and gRPC release the GIL, so 64 sleeping
workers need neither 64 cores nor 64 interpreters). No process imports TensorFlow (`no_tensorflow`).

Interval 0 (10 candidates) is scored in the chief's process, without sleeping; then, once all W workers
have asked for work, the chief opens interval 1 (its paths drawn before: the made-up completer is not
the chief's cost) and the wall time runs until its pool is formed. One
worker scores a bounded number of trials instead of the whole interval (it would take S x 50 x
per_completion_s). Figures: throughput in completions/s for each W, `sim_efficiency_W` = throughput /
(W x one worker's); `sim_pools_equal` (every full run's pools and potentials equal the ones computed
directly from `correct_of`, exactly); `sim_scored_once` (every trial scored once: no expired lease, no
late report, the workers' counts sum to the trials scored); `oracle_ms_per_trial` (the Oracle's own
create_trial + update_trial + end_trial, in this process, no sleep, no gRPC) and
`oracle_grpc_ms_per_trial` (the same through one gRPC client), both without the interval's close, whose
cost (the pool update and the one write of the project directory) is `oracle_close_ms`. With the
tail of an interval (its last trials scored while other workers wait) the best efficiency is
trials / (W x ceil(trials / W)); `trial_completions` = 60 makes 750 trials, 0.98 for W = 64. The
chief's cost per trial bounds the rest: W workers ask W / (trial_completions x per_completion_s) trials a
second (107 at W = 64, 0.6 s a trial). `--quick` (S=300, 20 completions a trial, under a minute) asks
three times as many, more than this 2-core machine's chief serves: its W = 64 figure shows that bound.
Ends with one JSON line.
"""

import argparse
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

from bench import no_tensorflow  # pylint: disable=unused-import  (keras-tuner without TensorFlow)
from pcnas_tf.searcher import oracle as oracle_lib
from pcnas_tf.searcher import pool as pool_lib
from pcnas_tf.searcher import remote_eval

NUM_MIXOPS, NUM_CHOICES, POOL_SIZE = 21, 10, 5
BATCH = 50  # images a completion is scored on
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def correct_of(path) -> int:
  """The known score of a completion: its correct predictions out of BATCH, from its path alone."""
  return zlib.crc32(bytes(path)) % (BATCH + 1)


def completer(num_choices, samples):
  """candidate -> its `samples` full paths, drawn from the candidate's key alone (any process, any
  order: the same paths)."""
  def complete(candidate):
    rng = random.Random(pool_lib.key(candidate))
    rest = num_choices[len(candidate):]
    return [tuple(candidate) + tuple(rng.randrange(n) for n in rest) for _ in range(samples)]
  return complete


def direct_history(num_choices, pool_size, complete, intervals):
  """(pool, potentials) of each interval computed from `correct_of` directly: no trials, no chunks."""
  pool, history = [], []
  for _ in range(intervals):
    candidates = pool_lib.extend(pool, num_choices)
    scores = []
    for candidate in candidates:
      paths = complete(candidate)
      scores.append(pool_lib.potential_of(sum(map(correct_of, paths)), BATCH * len(paths)))
    pool = pool_lib.top_p(candidates, scores, pool_size)
    history.append(([list(m) for m in pool], scores))
  return history


def known_metrics(values) -> dict:
  paths = json.loads(values[oracle_lib.COMPLETIONS])
  return remote_eval.metrics_of(sum(map(correct_of, paths)), BATCH * len(paths))


class SimOracle(oracle_lib.PCNASOracle):
  """The chief's Oracle, told by the benchmark when to send its workers home (`stopped`)."""

  stopped = False

  def populate_space(self, trial_id):
    if self.stopped:
      return {"status": "STOPPED"}
    return super().populate_space(trial_id)


def new_oracle(directory, samples, trial_completions, lease_timeout=None, num_mixops=NUM_MIXOPS):
  """An Oracle whose interval 0 is already scored here (its 10 candidates, without sleeping)."""
  num_choices = (NUM_CHOICES,) * num_mixops
  oracle = SimOracle(num_choices, POOL_SIZE, lease_timeout=lease_timeout,
                     trial_completions=trial_completions, seed=0)
  oracle._set_project_dir(directory, "oracle")  # pylint: disable=protected-access
  oracle.start_interval(completer(num_choices, samples))
  for trial in oracle.take_trials(remote_eval.CHIEF):
    oracle_lib.report(oracle, trial, known_metrics(trial.hyperparameters.values))
  return oracle


# The fake workers ------------------------------------------------------------------------------------------

class SleepingEvaluator:
  """A `PotentialEvaluator` stand-in: `per_completion_s` of sleep per completion, `correct_of` each."""

  def __init__(self, per_completion_s):
    self.per_completion_s = per_completion_s

  def correct_counts(self, completions, offsets):
    del offsets
    time.sleep(self.per_completion_s * sum(len(paths) for paths in completions.values()))
    return {k: [correct_of(p) for p in paths] for k, paths in completions.items()}

  def batch_size(self, index):
    del index
    return BATCH


class SleepingWorker(remote_eval.Worker):
  """`remote_eval.Worker`'s loop (ask, score, report, poll while idle) with no weights to load."""

  def _evaluator_for(self, interval):
    if self.evaluator is None:
      self.evaluator = self.evaluator_factory()
    return self.evaluator


def worker_process(prefix, threads, per_completion_s, poll_interval, rpc_timeout):
  """Runs `threads` workers (KERASTUNER_* name the chief) and prints one JSON line: trials scored each."""
  workers = [SleepingWorker(None, lambda: SleepingEvaluator(per_completion_s), f"{prefix}-{i}",
                            rpc_timeout=rpc_timeout, connect_timeout=rpc_timeout,
                            poll_interval=poll_interval, verbose=False) for i in range(threads)]
  running = [threading.Thread(target=w.run, daemon=True) for w in workers]
  for thread in running:
    thread.start()
  for thread in running:
    thread.join()
  print(json.dumps({"scored": [w.scored for w in workers], "tensorflow": "tensorflow" in sys.modules}))


def _start_workers(port, workers, processes, per_completion_s, poll_interval, rpc_timeout):
  env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port),
             KERASTUNER_TUNER_ID="sim")
  processes = min(processes, workers)
  shares = [workers // processes + (i < workers % processes) for i in range(processes)]
  return [subprocess.Popen(
      [sys.executable, "-m", "bench.eval_simulation", "--worker_threads", str(share),
       "--worker_prefix", f"p{i}", "--per_completion_s", repr(per_completion_s),
       "--poll_interval", repr(poll_interval), "--rpc_timeout", repr(rpc_timeout)],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
          for i, share in enumerate(shares)]


def _free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_for(condition, timeout, what):
  deadline = time.monotonic() + timeout
  while not condition():
    if time.monotonic() > deadline:
      raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
    time.sleep(0.002)


# One simulation ---------------------------------------------------------------------------------------------

def simulate(root, workers, samples, trial_completions, per_completion_s, processes=4, trial_limit=None,
             poll_interval=0.05, num_mixops=NUM_MIXOPS, timeout=None):
  """W=`workers` sleeping workers score interval 1 of a fresh Oracle (or its first `trial_limit` trials).

  Returns a dict: `wall_s` (from opening the interval to its pool, or to the `trial_limit`-th report),
  `completions` scored in that time, `throughput`, the Oracle's `history`, `interval_trials`,
  `trials_scored`, the workers' `scored` counts, `expired_leases`, `late_reports`, `tensorflow` (whether
  any worker process imported it).
  """
  directory = tempfile.mkdtemp(dir=root, prefix=f"w{workers}_")
  oracle = new_oracle(directory, samples, trial_completions, lease_timeout=120.0, num_mixops=num_mixops)
  num_choices = oracle.num_choices
  port = _free_port()
  settings = remote_eval.ServeSettings(f"127.0.0.1:{port}", lease_timeout=120.0, stop_grace=30.0)
  trials = len(pool_lib.extend(oracle.pool, num_choices)) * math.ceil(samples / trial_completions)
  expected = per_completion_s * trial_completions * (trial_limit or math.ceil(trials / workers))
  timeout = timeout or 3 * expected + 60
  procs = []
  try:
    with remote_eval.serving(oracle, settings):
      procs = _start_workers(port, workers, processes, per_completion_s, poll_interval, rpc_timeout=30.0)
      complete = completer(num_choices, samples)
      paths = {c: complete(c) for c in pool_lib.extend(oracle.pool, num_choices)}  # made up: not timed
      _wait_for(lambda: len(oracle.tuner_ids) >= workers, 120, f"{workers} workers to ask")
      start = time.monotonic()
      oracle.start_interval(paths.__getitem__)
      if trial_limit:
        _wait_for(lambda: oracle.trials_scored >= trial_limit, timeout, f"{trial_limit} trials")
      else:
        _wait_for(lambda: not oracle.interval_open, timeout, "the interval to close")
      wall = time.monotonic() - start
      completions = sum(r[1] for r in list(oracle.results) if r is not None) // BATCH
      oracle.stopped = True  # the workers' next ask is answered STOPPED; `serving` waits for them all
    reports = []
    for proc in procs:
      output, _ = proc.communicate(timeout=60)
      lines = [line for line in output.splitlines() if line.startswith("{")]
      if proc.returncode or not lines:
        raise RuntimeError(f"worker process exited {proc.returncode}:\n{output[-3000:]}")
      reports.append(json.loads(lines[-1]))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  scored = [n for report in reports for n in report["scored"]]
  return {"workers": workers, "num_choices": num_choices, "wall_s": wall, "completions": completions,
          "throughput": completions / wall,
          "history": oracle.history, "interval_trials": oracle.interval_trials,
          "trials_scored": oracle.trials_scored, "scored": scored, "expired_leases": oracle.expired_leases,
          "late_reports": oracle.late_reports, "tensorflow": any(r["tensorflow"] for r in reports),
          "ended_once": len(oracle.end_order) == len(set(oracle.end_order)) == len(oracle.trials)}


def pools_equal(result, samples):
  """Whether every interval the simulation finished formed the pool computed directly, exactly."""
  history, num_choices = result["history"], result["num_choices"]
  direct = direct_history(num_choices, POOL_SIZE, completer(num_choices, samples), len(history))
  return all(record["pool"] == pool and record["potentials"] == scores
             for record, (pool, scores) in zip(history, direct))


def scored_once(result) -> bool:
  """Every trial handed out was scored by exactly one worker (or the chief, interval 0)."""
  return (result["expired_leases"] == 0 and result["late_reports"] == 0 and result["ended_once"]
          and sum(result["scored"]) == result["trials_scored"])


# The chief's own cost -------------------------------------------------------------------------------------

def oracle_cost(root, samples, trial_completions, grpc_client=False):
  """ms per trial of create_trial + update_trial + end_trial for interval 1 (the scoring not timed),
  in this process or through one gRPC client; and the ms of the report that closes the interval."""
  oracle = new_oracle(tempfile.mkdtemp(dir=root, prefix="cost_"), samples, trial_completions,
                      lease_timeout=120.0)
  oracle.start_interval(completer(oracle.num_choices, samples))
  port = _free_port()
  settings = remote_eval.ServeSettings(f"127.0.0.1:{port}", lease_timeout=120.0, stop_grace=5.0)
  with remote_eval.serving(oracle, settings if grpc_client else None):
    if grpc_client:
      saved = dict(os.environ)
      os.environ.update(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port),
                        KERASTUNER_TUNER_ID="cost")
      try:
        client, _ = remote_eval.connect(30.0)
      finally:
        os.environ.clear()
        os.environ.update(saved)
    else:
      client = oracle
    spent, last = 0.0, 0.0
    while True:
      start = time.perf_counter()
      trial = client.create_trial("cost")
      spent += time.perf_counter() - start
      if trial.status != "RUNNING":
        break
      metrics = known_metrics(trial.hyperparameters.values)
      start = time.perf_counter()
      oracle_lib.report(client, trial, metrics)
      last = time.perf_counter() - start
      spent += last
    oracle.stopped = True
    if grpc_client:
      client.create_trial("cost")  # STOPPED: `serving` need not wait
  trials = oracle.interval_trials
  return 1000 * (spent - last) / (trials - 1), 1000 * last


# The benchmark --------------------------------------------------------------------------------------------

def run(root, worker_counts=(1, 8, 32, 64), samples=900, trial_completions=60, per_completion_s=0.01,
        single_worker_trials=20, processes=4, num_mixops=NUM_MIXOPS):
  """Every simulation and measurement; prints a line each and returns the figures."""
  figures, results = {}, {}
  in_process_ms, close_ms = oracle_cost(root, samples, trial_completions)
  grpc_ms, grpc_close_ms = oracle_cost(root, samples, trial_completions, grpc_client=True)
  print(f"chief: {in_process_ms:.2f} ms a trial in process, {grpc_ms:.2f} ms through one gRPC client; "
        f"the interval's close {close_ms:.0f} ms ({grpc_close_ms:.0f} ms through gRPC)")
  for workers in worker_counts:
    limit = single_worker_trials if workers == 1 else None
    result = simulate(root, workers, samples, trial_completions, per_completion_s, processes=processes,
                      trial_limit=limit, num_mixops=num_mixops)
    results[workers] = result
    ideal = result["completions"] * per_completion_s / workers
    print(f"W={workers:3d}: {result['completions']:6d} completions in {result['wall_s']:6.2f} s "
          f"(ideal {ideal:6.2f} s), {result['throughput']:8.1f} completions/s"
          + (f"; {result['trials_scored']} of {result['interval_trials']} trials" if limit else ""))
  one = results[worker_counts[0]]["throughput"] / worker_counts[0]
  for workers in worker_counts[1:]:
    figures[f"sim_efficiency_{workers}"] = round(results[workers]["throughput"] / (workers * one), 3)
  full = [r for w, r in results.items() if w != 1]
  trials = full[0]["interval_trials"] if full else 0
  figures.update({
      "sim_pools_equal": bool(full) and all(pools_equal(r, samples) for r in full),
      "sim_scored_once": all(scored_once(r) for r in results.values()),
      "sim_workers_import_tensorflow": any(r["tensorflow"] for r in results.values()),
      "sim_throughput": {str(w): round(r["throughput"], 1) for w, r in results.items()},
      "sim_wall_s": {str(w): round(r["wall_s"], 3) for w, r in results.items()},
      "sim_tail_bound": {str(w): round(trials / (w * math.ceil(trials / w)), 3) for w in results if w != 1},
      "oracle_ms_per_trial": round(in_process_ms, 3), "oracle_grpc_ms_per_trial": round(grpc_ms, 3),
      "oracle_close_ms": round(close_ms, 1), "interval_trials": trials, "samples": samples,
      "trial_completions": trial_completions, "per_completion_s": per_completion_s,
      "worker_processes": processes, "cpu_count": os.cpu_count()})
  return figures


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="S=300, 20 completions a trial: under a minute.")
  parser.add_argument("--workers", default="1,8,32,64", help="Worker counts; the first is the reference.")
  parser.add_argument("--samples", type=int, default=None, help="S, completions per candidate (900).")
  parser.add_argument("--trial_completions", type=int, default=None, help="Completions a trial (60).")
  parser.add_argument("--per_completion_s", type=float, default=0.01, help="A worker's sleep a completion.")
  parser.add_argument("--single_worker_trials", type=int, default=20, help="Trials one worker scores.")
  parser.add_argument("--processes", type=int, default=4, help="Processes the workers are spread over.")
  # A worker process (started by the benchmark itself).
  parser.add_argument("--worker_threads", type=int, default=None, help=argparse.SUPPRESS)
  parser.add_argument("--worker_prefix", default="w", help=argparse.SUPPRESS)
  parser.add_argument("--poll_interval", type=float, default=0.05, help=argparse.SUPPRESS)
  parser.add_argument("--rpc_timeout", type=float, default=30.0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker_threads:
    worker_process(args.worker_prefix, args.worker_threads, args.per_completion_s, args.poll_interval,
                   args.rpc_timeout)
    return
  samples = args.samples or (300 if args.quick else 900)
  trial_completions = args.trial_completions or (20 if args.quick else 60)
  with tempfile.TemporaryDirectory() as root:
    figures = run(root, tuple(int(w) for w in args.workers.split(",")), samples, trial_completions,
                  args.per_completion_s, args.single_worker_trials, args.processes)
  figures["tensorflow_imported"] = "tensorflow" in sys.modules
  print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
  main()
