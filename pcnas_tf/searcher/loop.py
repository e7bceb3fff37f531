"""The PC-NAS search (paper Algorithm 2): warm-up, then one pool update and Ti epochs per mixop.

`run_search(config)` reads top to bottom: set up (strategy, data, supergraph, constraint, Oracle), then
a loop whose position is derived from two counters, epochs trained and intervals scored, so a run
resumed from any checkpoint continues exactly where it stopped:

  epoch < Tw                           warm-up epoch: uniform single paths
  interval k = (epoch - Tw) // Ti      not scored yet: evaluate the potentials of the pool's extensions
                                       scored: train one epoch on completions of pool members

Potentials are evaluated here, or, with `serve` settings (the KERASTUNER_* variables of a chief), by
evaluation workers that pull the Oracle's trials (`remote_eval`); the pool is the same either way.

After every interval and at the end the chief reports (`pcnas_tf/report/`): an HParams session per
scored candidate, the pictures, and report.html.
"""

import hashlib
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from tqdm import auto as tqdm  # widgets in a notebook, text on a console

from pcnas_tf import files
from pcnas_tf import provenance

from pcnas_tf.training import workdir

from pcnas_tf.training import checkpoint
from pcnas_tf.distribute import cluster as cluster_lib
from pcnas_tf.constraints import constraint as constraint_lib
from pcnas_tf.data import sources as data_sources
from pcnas_tf.data import batches as batches_lib
from pcnas_tf import errors
from pcnas_tf.searcher import baselines as evolution
from pcnas_tf.constraints import latency_table
from pcnas_tf.constraints import sampling
from pcnas_tf.searcher import oracle as oracle_lib
from pcnas_tf.searcher import pool as pool_lib
from pcnas_tf.searcher import potential as potential_lib
from pcnas_tf.searcher import remote_eval
from pcnas_tf.searcher import search_config
from pcnas_tf.report import figure3
from pcnas_tf.report import figures
from pcnas_tf.report import hparams
from pcnas_tf.report import page
from pcnas_tf.space import cost as cost_lib
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.distribute import strategy as strategy_lib
from pcnas_tf.training import epochs
from pcnas_tf.training import supergraph_trainer as trainer_lib

RESULT_FILE = "search_result.json"
# With evaluation workers, the chief checkpoints at most this often while their reports come in.
SERVED_SAVE_S = 30.0
# At most this share of a search's time goes to redrawing its pictures before the end (`_report`).
PICTURE_SHARE = 0.02


class Search:
  """One search run in a work directory. Use `run_search`."""

  def __init__(self, config: search_config.SearchConfig, work_dir: str, progress=True,
               collective_timeout_s=strategy_lib.COLLECTIVE_TIMEOUT_S, serve=None, oracle=None):
    self.config, self.work_dir = config, work_dir
    keras.utils.set_random_seed(config.seed)  # the supergraph's initial weights
    self.space = space_lib.get_space(config.space, config.width)
    self.strategy = strategy_lib.make_strategy(config.strategy, collective_timeout_s)
    self.collective_timeout_s = collective_timeout_s
    # Every task runs this whole loop; only the chief's files are kept (see cluster.py).
    self.task = strategy_lib.task_of(self.strategy)
    self.multi_worker = self.task.num_tasks > 1
    # With evaluation workers the chief serves the trials; the cluster's other tasks pull them too.
    self.serve = serve if self.task.is_chief else None
    self.pull_from = serve if not self.task.is_chief else None
    self.progress = progress and self.task.is_chief
    self.out_dir = cluster_lib.output_dir(work_dir, self.task)
    self.splits, self.constraint = load_checked(config, self.space, progress)
    self._completion_weight = suffix_flops(self.space, self.splits.image_shape, self.splits.num_classes)
    self.steps_per_epoch = config.steps_per_epoch or max(1, self.splits.num_train // config.batch_size)
    self.total_steps = max(1, self.total_epochs * self.steps_per_epoch)
    optimizer = config.optimizer
    self.trainer = trainer_lib.SupergraphTrainer(
        self.space, self.splits.image_shape, self.splits.num_classes, self.strategy, config.batch_size,
        optimizer.schedule(self.total_steps), optimizer.momentum, True, optimizer.weight_decay)
    self.num_choices = tuple(len(layer.choices) for layer in self.space.layers)
    self.oracle = oracle if oracle is not None else make_oracle(
        config, self.space, serve.lease_timeout if serve else None,
        serve.trial_completions if serve else None)
    if (self.oracle.num_choices, self.oracle.pool_size) != (self.num_choices, config.pool_size):
      raise ValueError(f"The Oracle given keeps {self.oracle.pool_size} of {self.oracle.num_choices}; "
                       f"this search {config.pool_size} of {self.num_choices}.")
    self.oracle._set_project_dir(self.out_dir, "oracle")  # pylint: disable=protected-access
    # Paths, completions and the Oracle's draws: one generator with the same seed and the same calls on
    # every task, so all tasks train the same path at every step without sending it (checked at each
    # epoch's end in a multi-worker run; `paths_digest` fingerprints every path trained).
    self.rng = np.random.default_rng(config.seed)
    self.paths_digest = ""
    self.epoch, self.step_in_epoch, self.checkpoints = 0, 0, 0
    self.timings = {"warmup_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "report_s": 0.0}
    self.interval_eval_s = []  # seconds each interval's potentials took (in the run that finished it)
    self.log = []
    # Candidate (string key) -> the mean costs of its completions, from their draw to the interval's end.
    self.candidate_costs = {}
    self.writer = None  # created by `run`: nothing is written before every check has passed
    self._iterator = None
    self._potential_evaluator = None
    self._pictures_at, self._pictures_s = 0.0, 0.0  # when the pictures were last drawn, and in how long

  # Main loop ----------------------------------------------------------------------------------------

  @property
  def total_epochs(self):
    return self.config.warmup_epochs + self.space.num_layers * self.config.interval_epochs

  def run(self):
    self.writer = tf.summary.create_file_writer(self._log_dir)
    if not self._restore() and self.task.is_chief:
      hparams.write_experiment(self._log_dir, self.space, constraint_lib.prediction_key(self.constraint.kind),
                               self.constraint.unit)
    if self.oracle.history and "pool_costs" not in self.oracle.history[-1]:
      self._log_interval()  # stopped after the interval's last checkpoint, before its report
    pool_search = self.config.training == "pcnas" or self.config.search == "pcnas"
    with remote_eval.serving(self.oracle, self.serve):
      while self.epoch < self.total_epochs or (pool_search and not self.oracle.finished):
        interval = self._interval()
        if interval is not None and len(self.oracle.history) <= interval:
          self._evaluate_interval()
        else:
          self._train_epoch(interval)
    if self.config.search == "pcnas":
      return self._finish(self._pool_result())
    return self._finish(self._baseline_result())

  def _interval(self):
    """The interval the next epoch belongs to, or None during warm-up."""
    if self.epoch < self.config.warmup_epochs:
      return None
    if self.config.training == "oneshot":  # trained uniformly; the pool search (if any) comes after
      done = self.epoch >= self.total_epochs and self.config.search == "pcnas"
      return self.space.num_layers - 1 if done else None
    ti = max(1, self.config.interval_epochs)
    return min((self.epoch - self.config.warmup_epochs) // ti, self.space.num_layers - 1)

  # Training -----------------------------------------------------------------------------------------

  def _train_epoch(self, interval):
    start, phase = time.time(), "warmup" if interval is None else f"interval {interval}"
    iterator = self._train_iterator()
    members = self.oracle.pool if interval is not None else []

    def step():
      path = self._training_path(members)
      self._record_path(path)
      return self.trainer.train_step(iterator, path)

    def after_step(done):
      self.step_in_epoch = done
      if done % self.config.checkpoint_every == 0 < self.steps_per_epoch - done:
        self._save()

    loss, accuracy = epochs.run_epoch(
        step, epoch=self.epoch, total_epochs=self.total_epochs, steps=self.steps_per_epoch,
        batch_size=self.config.batch_size, work_dir=self.work_dir, start=self.step_in_epoch,
        phase=phase, progress=self.progress, after_step=after_step,
        # One process saves on its own; in a cluster a checkpoint takes every task, so Ctrl-C on one
        # stops it at once and the cluster resumes from its last checkpoint.
        on_interrupt=None if self.multi_worker else lambda done: self._save())
    self._end_epoch(phase, loss, accuracy)
    self.timings["warmup_s" if interval is None else "train_s"] += time.time() - start

  def _training_path(self, members):
    """Warm-up and One-Shot: a uniform path; PC-NAS: a uniform pool member, completed at random."""
    partial = members[int(self.rng.integers(len(members)))] if members else ()
    return pool_lib.complete(partial, self.num_choices, self.rng)

  def _record_path(self, path):
    text = self.paths_digest + json.dumps([int(c) for c in path])
    self.paths_digest = hashlib.sha256(text.encode()).hexdigest()[:16]

  def _end_epoch(self, phase, loss, accuracy):
    self.epoch, self.step_in_epoch = self.epoch + 1, 0
    self._check_agreement("the paths trained", [self.epoch, self.paths_digest])
    learning_rate = float(self.trainer.optimizer.current_learning_rate())
    self.log.append({"epoch": self.epoch, "phase": phase, "loss": loss, "accuracy": accuracy,
                     "learning_rate": learning_rate})
    epochs.write_scalars(self.writer, self.epoch, {
        "train/loss": loss, "train/accuracy": accuracy, "train/learning_rate": learning_rate})
    if self.progress:
      print(f"epoch {self.epoch}/{self.total_epochs} ({phase}): loss {loss:.4f}, "
            f"accuracy {accuracy:.4f}, lr {learning_rate:.4g}", flush=True)
    self._save()

  def _train_iterator(self):
    if self._iterator is None:
      skip = (self.epoch * self.steps_per_epoch + self.step_in_epoch)
      config, splits, batch = self.config.data, self.splits, self.config.batch_size

      def dataset_fn(input_context):
        return batches_lib.train_pipeline(splits, config, batch, input_context, skip_batches=skip)

      dataset = self.strategy.distribute_datasets_from_function(dataset_fn)
      self._iterator = iter(dataset)
    return self._iterator

  # Potential evaluation -----------------------------------------------------------------------------

  def _evaluate_interval(self):
    start = time.time()
    if self.serve:  # before any trial is handed out: workers load these weights
      remote_eval.save_interval_weights(self.work_dir, len(self.oracle.history),
                                        self.trainer.supergraph, {"epoch": self.epoch})
    if not self.oracle.interval_open:
      self.oracle.start_interval(self._completions)
    interval = self.oracle.interval
    bar = tqdm.tqdm(total=self.oracle.interval_trials, disable=not self.progress, leave=False,
                    desc=f"potentials, mixop {interval + 1}/{self.space.num_layers}")
    bar.update(self.oracle.trials_scored)
    if self.serve or self.pull_from:
      # From here the chief hands out this interval's trials: its workers and the cluster's tasks pull.
      self._check_agreement("the interval being scored", interval)
      if self.serve:
        self._wait_for_workers(bar)
      else:
        self._pull_trials()
      if self.multi_worker:  # every task takes the chief's results
        self.oracle.fill_results(self._gather_max(self.oracle.results_row()))
    else:
      self._score_trials(bar)
    bar.close()
    self._check_agreement("the new pool", [list(m) for m in self.oracle.pool])
    self.interval_eval_s.append(round(time.time() - start, 4))  # the pool is formed; then the report
    self._log_interval()
    self.timings["eval_s"] += time.time() - start

  @property
  def _log_dir(self):
    return os.path.join(self.out_dir, "tensorboard")

  def _completions(self, candidate):
    paths = self.constraint.completions(candidate, self.config.num_samples, self.rng, self.config.sampling)
    self.candidate_costs[pool_lib.key(candidate)] = self.constraint.mean_costs(paths)
    return paths

  def _score_trials(self, bar, limit=None, shared=True):
    """Scores the interval's trials here, a pool member's at a time (they share its prefix), with a
    checkpoint after each; `limit` trials at most.

    In a cluster (and `shared`) the whole interval is one group: its completions, trial after trial, are
    cut into T contiguous shares of one estimated cost (`suffix_flops`), one per task (`_shares`:
    whole candidates where the cut allows, so a task keeps the sharing of a candidate's tree; each
    completion at its own index, so on its own batch), and the tasks add their correct counts in one
    collective (`_gather_sum`): all form the same pool, the one a single process forms, whatever the
    number of tasks, and each does about 1/T of the work. One group rather than one per member: a
    member cut across tasks repeats the top of its trees on each, a collective per member waits for
    the slowest task P times, and a checkpoint holds the whole supergraph (measured on two pinned
    tasks: the split members' scoring cost each task 65-73% of one process' instead of 50%). A task
    lost mid-evaluation costs the interval's scoring, which the restarted cluster does again.
    """
    shared = shared and self.multi_worker
    evaluator = self._evaluator()
    group = self.oracle.interval_trials if shared else self._member_trials()
    while limit is None or limit > 0:
      trials = self.oracle.take_trials(remote_eval.CHIEF, group if limit is None else min(group, limit))
      if not trials:
        return
      values = [trial.hyperparameters.values for trial in trials]
      if shared:
        shares = _shares(values, self.task.rank, self.task.num_tasks, self._completion_weight)
        row = [x for m in remote_eval.score_trials(evaluator, shares)
               for x in (m[oracle_lib.CORRECT], m[oracle_lib.IMAGES])]
        row = self._gather_sum(row)
        metrics = [remote_eval.metrics_of(int(row[2 * i]), int(row[2 * i + 1])) for i in range(len(trials))]
      else:
        metrics = remote_eval.score_trials(evaluator, values)
      for trial, trial_metrics in zip(trials, metrics):
        oracle_lib.report(self.oracle, trial, trial_metrics)
      bar.update(len(trials))
      limit = None if limit is None else limit - len(trials)
      self._save()

  def _member_trials(self) -> int:
    """Trials of one pool member in the open interval (all of them in the first, whose pool is empty)."""
    return max(1, self.oracle.interval_trials // max(1, len(self.oracle.pool)))

  def _gather_sum(self, row):
    """The sum over tasks of every task's `row` of integers (a collective; exact below 2**53). Each of a
    task's replicas sends the row, so the sum over replicas is divided by the replicas per task."""
    rows = cluster_lib.gather(self.strategy, row)
    return np.rint(rows.sum(axis=0) / (len(rows) // self.task.num_tasks))

  def _gather_max(self, row):
    """The element-wise maximum of every task's `row` (a collective)."""
    return cluster_lib.gather(self.strategy, row).max(axis=0)

  def _pull_trials(self):
    """A training task of a cluster whose chief serves evaluation workers: scores trials from the
    chief's Oracle as a worker does, with this task's copy of the supergraph, until none is left."""
    client, deadline = remote_eval.connect(self.pull_from.lease_timeout)
    evaluator = self._evaluator()
    try:
      while (trial := client.create_trial(oracle_lib.TRAINING_TASK + self.task.name)).status == "RUNNING":
        # The chief answered: a later call that takes longer than a collective may means it is gone.
        deadline.seconds = self.collective_timeout_s
        metrics = remote_eval.trial_metrics(evaluator, trial.hyperparameters.values)
        oracle_lib.report(client, trial, metrics)
    except remote_eval.grpc.RpcError as error:
      raise cluster_lib.WorkerLostError(
          f"{self.task.name} lost contact with the chief's trials at {self.pull_from.address} "
          f"({error.code().name}); start every task again with the same command and TF_CONFIG: they "
          f"resume from the newest checkpoint in {self.work_dir!r}.") from error

  def _wait_for_workers(self, bar):
    """Checkpoints as the workers report, until every candidate of the interval is scored.

    When no worker has asked for a trial within a lease and none holds one, the chief scores the
    trials itself, a pool member's at a time (saying so once), so a search never waits on workers that
    are gone or never came; a worker that asks meanwhile gets the next trial.
    """
    interval, last_report, said = self.oracle.interval, time.monotonic(), False
    saved_at = last_report
    lease = self.serve.lease_timeout
    while True:
      done = len(self.oracle.history) > interval
      scored = bar.total if done else self.oracle.trials_scored
      if scored > bar.n:
        bar.update(scored - bar.n)
        last_report = time.monotonic()
        # A checkpoint holds the whole supergraph: with many small trials, one at most every
        # SERVED_SAVE_S while workers report (a resumed chief hands out again only what is unsaved).
        if done or last_report - saved_at >= SERVED_SAVE_S:
          self._save()
          saved_at = time.monotonic()
      if done:
        return
      now = time.monotonic()
      asked = self.oracle.last_asked
      if (now - last_report > lease and (asked is None or now - asked > lease)
          and not self.oracle.workers_holding_trials):
        if not said:
          print(f"No evaluation worker at {self.serve.address} has asked for a trial in {lease:g} s; "
                f"the chief scores the trials itself until one does.", flush=True)
          said = True
        # Alone: the other training tasks of a cluster pull from this Oracle too, outside collectives.
        self._score_trials(bar, self._member_trials(), shared=False)
        last_report = time.monotonic() - lease  # check again at once: a worker may have asked
        continue
      if now - last_report > lease:  # say why the search waits
        print(f"Waiting for evaluation workers at {self.serve.address}: {bar.n} of {bar.total} trials "
              f"of mixop {interval + 1} scored.", flush=True)
        last_report = now
      time.sleep(0.02)

  def _baseline_result(self):
    """EA or random search on the trained supergraph, with PC-NAS' number of evaluations (paper 4.4).

    Each evaluation is one architecture on one validation batch, batches taken in turn, so both
    spend the same number of validation images as PC-NAS' potential evaluation.
    """
    start, evaluator = time.time(), self._evaluator(tree=False)
    budget = evolution.progressive_evaluations(self.num_choices, self.config.pool_size,
                                               self.config.num_samples)
    counter = iter(range(budget))
    evaluate = lambda path: evaluator.accuracy(path, next(counter) % len(evaluator.batches))
    sampler = self.constraint.sampler
    if self.config.search == "ea":
      outcome = evolution.evolutionary_search(sampler, evaluate, budget, self.rng, self.config.pool_size)
    else:
      outcome = evolution.random_search(sampler, evaluate, budget, self.rng)
    best = {}
    for path, score in outcome.history:  # the best score of each distinct architecture
      best[tuple(path)] = max(score, best.get(tuple(path), -1.0))
    ranked = sorted(best, key=lambda p: -best[p])[:self.config.pool_size]
    self.timings["eval_s"] += time.time() - start
    return [(path, best[path]) for path in ranked], {"evaluations": len(outcome.history)}

  def _pool_result(self):
    final = self.oracle.history[-1]
    return list(zip(map(tuple, final["pool"]), final["pool_potentials"])), {}

  def _evaluator(self, tree=True):
    """The search's one evaluator: its batches are fixed and its traces serve every interval. For the
    potentials (`tree`) every piece is traced at once; EA and random search use the whole path only."""
    if self._potential_evaluator is None:
      self._potential_evaluator = potential_lib.search_evaluator(self.config, self.trainer.supergraph, self.splits)
      if tree:
        self._potential_evaluator.trace_all()
    return self._potential_evaluator

  # Multi-worker agreement ---------------------------------------------------------------------------

  def _check_agreement(self, what, value):
    """Raises `ClusterError` unless every task holds the same `value` (a barrier, too)."""
    if not self.multi_worker:
      return
    rows = cluster_lib.gather(self.strategy, [cluster_lib.digest(value)])
    if len(set(rows[:, 0])) > 1:
      raise cluster_lib.ClusterError(
          f"The workers disagree on {what} ({self.task.name} has {value!r}); start every task with the "
          f"same flags, code and shared --work_dir.")

  def _log_interval(self):
    record = self.oracle.history[-1]
    if not record["pool"]:
      raise sampling.BudgetError(
          f"No candidate of mixop {record['interval'] + 1} has a completion within the budget; raise "
          f"--budget.")
    costs = [self.constraint.cost_of_partial(m) for m in record["pool"]]
    record["pool_costs"] = costs
    record["candidate_costs"] = [self.candidate_costs.get(pool_lib.key(c), {}) for c in record["candidates"]]
    self.candidate_costs = {}
    scalars = {f"pool/potential_{rank}": value for rank, value in enumerate(record["pool_potentials"])}
    scalars.update({f"pool/{self.config.constraint}_{rank}": cost for rank, cost in enumerate(costs)})
    finite = [p for p in record["potentials"] if np.isfinite(p)]
    if finite:
      scalars.update({"candidates/potential_max": max(finite), "candidates/potential_mean": np.mean(finite),
                      "candidates/potential_min": min(finite)})
    epochs.write_scalars(self.writer, record["interval"] + 1, scalars)
    self._report(lambda: hparams.write_candidates(self._log_dir, self.space, record))
    if self.progress:
      best = record["pool_potentials"][0]
      print(f"mixop {record['interval'] + 1}/{self.space.num_layers}: pool of "
            f"{len(record['pool'])}, best potential {best:.4f}", flush=True)

  # Checkpoints --------------------------------------------------------------------------------------

  def _checkpointed(self):
    """(name, variable) of everything a checkpoint holds: the supergraph's variables, the optimizer's
    momentum (named after the variable it belongs to) and its step."""
    optimizer = self.trainer.optimizer
    momentum = [(checkpoint.MOMENTUM + checkpoint.name_of(v), slot)
                for v, slot in zip(optimizer.variables, optimizer.slots)]
    return (checkpoint.named(self.trainer.supergraph.variables, checkpoint.SUPERGRAPH) + momentum
            + [(checkpoint.ITERATIONS, optimizer.iterations)])

  def _save(self):
    self.checkpoints += 1
    oracle_state, trials = self.oracle.snapshot()
    state = {"config": self.config.to_json(), "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
             "oracle": oracle_state, "trials": trials, "rng": self.rng.bit_generator.state,
             "timings": self.timings, "interval_eval_s": self.interval_eval_s, "log": self.log,
             "checkpoints": self.checkpoints,
             "paths_digest": self.paths_digest, "candidate_costs": self.candidate_costs}
    # Every task reads its variables (which may take part in collectives); only the chief's copy is
    # kept, in the shared work directory, the others go to their temporary directories.
    checkpoint.save(os.path.join(self.out_dir, "checkpoints"), self.checkpoints,
                    checkpoint.arrays_of(self._checkpointed()), state)

  def _restore(self):
    """Every task resumes from the newest checkpoint in the shared work directory, the same one."""
    found = checkpoint.latest(os.path.join(self.work_dir, "checkpoints"))
    self._check_agreement("the checkpoint to resume from", found[1]["checkpoints"] if found else 0)
    if found is None:
      return False
    arrays, state = found
    checkpoint.assign(self._checkpointed(), arrays, self.work_dir, "this search's supergraph")
    self.oracle.restore(state["oracle"], state["trials"])
    self.rng.bit_generator.state = state["rng"]
    self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
    self.timings, self.log, self.checkpoints = state["timings"], state["log"], state["checkpoints"]
    self.interval_eval_s = state.get("interval_eval_s", [])
    self.paths_digest = state.get("paths_digest", "")
    self.candidate_costs = state.get("candidate_costs", {})
    self.timings.setdefault("report_s", 0.0)
    if self.progress:
      print(f"Resuming from checkpoint {self.checkpoints}: epoch {self.epoch}, step "
            f"{self.step_in_epoch}, {len(self.oracle.history)} mixops decided.", flush=True)
    return True

  # Results ------------------------------------------------------------------------------------------

  def _finish(self, ranked):
    ranked, extra = ranked
    pool = []
    for path, value in ranked:
      arch = self.space.arch_from_indices(path)
      pool.append({"arch": list(arch), "arch_string": self.space.arch_to_string(arch),
                   "potential": value, **self.constraint.describe(arch)})
    result = {**self._result_so_far(), "final_pool": pool, "chosen": pool[0],
              "search": {"training": self.config.training, "method": self.config.search, **extra},
              "versions": provenance.versions(), "paths_digest": self.paths_digest}
    if self.serve:
      result["remote_evaluation"] = {"address": self.serve.address, "trials": len(self.oracle.trials),
                                     "scored": len(self.oracle.end_order),
                                     "expired_leases": self.oracle.expired_leases,
                                     "late_reports": self.oracle.late_reports,
                                     "scored_by": dict(sorted(self.oracle.scored_by.items()))}
    self._report(lambda: self._draw_final(result), result)
    files.write_json(os.path.join(self.out_dir, RESULT_FILE), result)
    self.writer.flush()
    return result

  def _result_so_far(self) -> dict:
    """What search_result.json holds but the final pool: the page's view of a running search."""
    return {"space": self.space.to_json(), "space_name": self.space.name,
            "input_shape": list(self.splits.image_shape), "num_classes": self.splits.num_classes,
            "intervals": self.oracle.history, "constraint": self.constraint.summary(),
            "config": self.config.to_json(), "timings": self.timings,
            "interval_eval_s": self.interval_eval_s, "log": self.log,
            "search": {"training": self.config.training, "method": self.config.search},
            "distribution": {"strategy": self.config.strategy, "tasks": self.task.num_tasks,
                             "replicas": self.strategy.num_replicas_in_sync}}

  def _draw_final(self, result):
    chosen, constraint = result["chosen"], result["constraint"]
    title = (f"Chosen network {chosen['arch_string']} ({self.space.name} space): potential "
             f"{chosen['potential']:.3f}, predicted {constraint['kind']} "
             f"{figures.quantity(chosen[constraint['prediction_key']], constraint['unit'])}")
    figure3.draw_architecture(self.space, chosen["arch"], self.splits.image_shape,
                              os.path.join(self.out_dir, page.CHOSEN_PNG), title)
    validation = result["constraint"].get("table", {}).get("validation")
    if validation:
      figures.plot_latency_validation(validation, os.path.join(self.out_dir, page.LATENCY_PNG))

  def _report(self, write, result=None):
    """Runs `write` (HParams, pictures), redraws the search's pictures and rewrites report.html with
    `result` (the final result; default: the search so far). Only the chief writes these; the time
    goes to `timings["report_s"]`.

    Before the end, the pictures are redrawn only once the last drawing is `PICTURE_SHARE` of the
    time since: a tiny search scores an interval in a second, and a picture takes a few tenths.
    """
    if not self.task.is_chief:
      return
    start = time.time()
    write()
    result = result or self._result_so_far()
    if "final_pool" in result or start - self._pictures_at >= self._pictures_s / PICTURE_SHARE:
      self._draw_search(result)
      self._pictures_at, self._pictures_s = time.time(), time.time() - start
    page.write_report(self.out_dir, page.Run(result))
    self.timings["report_s"] += time.time() - start

  def _draw_search(self, result):
    if self.oracle.history:  # EA and random search on a One-Shot supergraph have no intervals
      figures.plot_search(result, os.path.join(self.out_dir, page.SEARCH_PNG))
    figures.plot_search_front(result, os.path.join(self.out_dir, page.SEARCH_FRONT_PNG))


def _shares(trials, rank, tasks, weight=None):
  """Trials' values cut to task `rank`'s share: of their completions laid end to end, trial after trial,
  the `rank`-th of `tasks` contiguous ranges of about one weight (each trial keeps the completions of it
  that fall in the range, possibly none, at their own completion indices).

  `weight(path, extend)`: a completion's estimated cost (default 1: ranges of one size, to within a
  completion). A completion belongs to the range its weight's midpoint falls in, so the ranges differ
  by at most one completion's weight.
  """
  paths = [json.loads(values[oracle_lib.COMPLETIONS]) for values in trials]
  weights = [np.array([1.0 if weight is None else weight(p, int(values[oracle_lib.EXTEND])) for p in ps])
             for values, ps in zip(trials, paths)]
  total, before, shares = sum(float(w.sum()) for w in weights), 0.0, []
  for values, trial_paths, trial_weights in zip(trials, paths, weights):
    middle = before + np.cumsum(trial_weights) - trial_weights / 2
    owner = np.minimum((tasks * middle / total).astype(int), tasks - 1) if total > 0 else np.zeros(0, int)
    mine = np.flatnonzero(owner == rank)
    begin, end = (int(mine[0]), int(mine[-1]) + 1) if len(mine) else (0, 0)
    shares.append({**values, oracle_lib.COMPLETIONS: json.dumps(trial_paths[begin:end]),
                   oracle_lib.FIRST: int(values.get(oracle_lib.FIRST, 0)) + begin})
    before += float(trial_weights.sum())
  return shares


def suffix_flops(space, input_shape, num_classes):
  """`weight(path, extend)` for `_shares`: the FLOPs a completion adds below its candidate's mixop
  `extend` (its later mixops and the head), each mixop at least a tenth of its dearest operator (an
  Identity still costs a call). An estimate: the evaluator shares nodes a completion has in common with
  others, most of all near the top."""
  costs = cost_lib.layer_costs(space, input_shape)
  floor = [0.1 * max(c.flops for c in layer) for layer in costs]
  head = cost_lib.head_cost(space, input_shape, num_classes).flops
  return lambda path, extend: head + sum(max(costs[l][c].flops, floor[l])
                                         for l, c in enumerate(path) if l > extend)


def make_oracle(config: search_config.SearchConfig, space, lease_timeout=None,
                trial_completions=None) -> oracle_lib.PCNASOracle:
  """The search's Oracle: P members of the pool over `space`'s mixops, seeded by the config."""
  num_choices = tuple(len(layer.choices) for layer in space.layers)
  return oracle_lib.PCNASOracle(num_choices, config.pool_size, seed=config.seed,
                                lease_timeout=lease_timeout, trial_completions=trial_completions)


def load_checked(config: search_config.SearchConfig, space, progress=True):
  """(data splits, `constraint.SearchConstraint`) of a search, after every check that needs them.

  In this order, cheapest first: the resolution against the space's total stride (`sources.load`), the
  data sizes against the batch sizes (`check_splits`), then the budget against the costs, for which a
  latency constraint builds its table (or reads it from the cache). Nothing is trained or written to
  the work directory.
  """
  splits = data_sources.load(config.data, min_resolution=space.total_stride)
  search_config.check_splits(config, splits)
  constraint = constraint_lib.build(space, splits.image_shape, splits.num_classes, config, progress)
  if progress:
    if config.constraint == "latency" and config.calibration_archs == 0:
      print(latency_table.UNCALIBRATED_NOTE, flush=True)
    print(constraint.budget_meaning(), flush=True)
  return splits, constraint


_OUTPUTS = ("checkpoints", "oracle", "tensorboard", RESULT_FILE, page.REPORT_FILE) + page.PICTURES


def has_trained_state(work_dir: str) -> bool:
  """Whether `work_dir` holds a checkpoint or a result, which only --overwrite may replace."""
  return (checkpoint.has_checkpoints(os.path.join(work_dir, "checkpoints"))
          or files.exists(os.path.join(work_dir, RESULT_FILE)))


def check_work_dir(work_dir: str, config: search_config.SearchConfig, overwrite: bool) -> bool:
  """Raises `UserError` unless `config` may run in `work_dir`; writes nothing.

  A work directory may be written, and it either holds this config's search (to resume), no trained
  state (a rejected or never started run: taken over), or `overwrite` is set.

  Returns:
    True if the run starts afresh there (earlier outputs are to be removed), False if it resumes.
  """
  files.check_writable_dir(work_dir)
  if overwrite or not has_trained_state(work_dir):
    return True
  if not files.exists(os.path.join(work_dir, workdir.CONFIG_FILE)):
    return False
  differences = workdir.saved_config_differences(work_dir, config.to_json(), "search config")
  if differences:
    raise errors.UserError(f"Work directory {work_dir!r} holds a search with a different config "
                           f"({'; '.join(differences[:3])}); use --overwrite to start afresh or "
                           f"another --work_dir.")
  return False


def prepare_work_dir(work_dir: str, config: search_config.SearchConfig, overwrite: bool):
  """Checks `work_dir` (`check_work_dir`), creates it and writes `config` to its config.json.

  A fresh start removes the outputs of an earlier run there first.
  """
  workdir.prepare(work_dir, check_work_dir(work_dir, config, overwrite), _OUTPUTS, config.to_json())


def run_search(config: search_config.SearchConfig, work_dir: str, overwrite=False, progress=True,
               collective_timeout_s=strategy_lib.COLLECTIVE_TIMEOUT_S, serve=None, oracle=None) -> dict:
  """Runs (or resumes) a search in `work_dir` and returns the result written to search_result.json.

  Every check (settings, work directory, data sizes against the batch sizes, the budget against the
  costs) is made before anything is trained or written to `work_dir`.

  Under `--strategy=multi_worker` every task calls this with the same arguments and a shared
  `work_dir`; only the chief prepares, locks and writes it (see cluster.py).

  `serve`: `remote_eval.ServeSettings` to have evaluation workers score the potentials; None scores
  them in this process. In a multi-worker run the chief serves; the other training tasks pull trials
  from it as the workers do, then all take the chief's results. Without `serve`, the tasks of a
  multi-worker run share the scoring among themselves.

  `oracle`: the `PCNASOracle` to run the pool on (`make_oracle`'s, e.g. a `PCNASTuner`'s); None makes one.
  It holds the search's state when this returns.
  """
  config.validate()
  return cluster_lib.run_job(
      work_dir, config.strategy == "multi_worker",
      lambda: check_work_dir(work_dir, config, overwrite),
      lambda chief: Search(config, work_dir, progress, collective_timeout_s, serve, oracle),
      lambda: prepare_work_dir(work_dir, config, overwrite))
