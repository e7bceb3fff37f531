"""`PCNASOracle`: the progressive partial-model pool as a keras-tuner Oracle (paper 3.3, Algorithm 2).

The Oracle decides, the search loop runs. At the start of interval l the Oracle extends its pool by every
operator of mixop l (`pool.extend`) and hands the candidates out as trials, one trial per pool member
(its N extensions share the member's prefix, so one trial keeps the per-trial overhead at P trials per
interval instead of P x N). A trial's hyperparameters are the member's choices (`mixop_00`, ...) and
`extend`, the mixop being decided; the runner reports `potential_<choice>` for each extension. When every
candidate of the interval is scored, the top P (`pool.top_p`) form the new pool. The Oracle never
trains; its state travels through `get_state`/`set_state` as plain data.

Completions travel with the trial. `start_interval(completer)` draws every candidate's completions at
once, in pool order, and each trial carries its member's (`completions`, JSON). Whoever scores a trial,
this process or an evaluation worker (`remote_eval`), scores the same paths, so the pool depends neither
on who scored what nor on the order in which the reports arrive.

Served to evaluation workers over keras-tuner's gRPC service, trials are leased: a trial not reported
within `lease_timeout` seconds goes back to keras-tuner's own retry queue (the one `Oracle.reload` fills
with the trials a crash interrupted), and the next worker that asks gets it. The first report of a trial
counts; a late one, from a worker taken for dead, is ignored. So every candidate is scored once whatever
the workers do. The methods the chief's own thread calls while workers are served take keras-tuner's
per-Oracle lock, as the gRPC handlers do (`_synchronized`).
"""

import functools
import json
import math
import threading
import time

import keras_tuner
from keras_tuner.src.engine import oracle as oracle_module
from keras_tuner.src.engine import trial as trial_module

from pcnas_tf.searcher import pool as pool_lib

EXTEND = "extend"
COMPLETIONS = "completions"


def _synchronized(method):
  """`keras_tuner.synchronized` (the same per-Oracle lock), but released when `method` raises.

  keras-tuner 1.4.8's decorator keeps the lock after an exception, so one bad report from a worker would
  leave every later call, the chief's included, waiting forever. Methods of the base class called
  inside share the lock through keras-tuner's record of its owner thread.
  """

  @functools.wraps(method)
  def wrapped(self, *args, **kwargs):
    thread = threading.current_thread().name
    if oracle_module.THREADS[self] == thread:
      return method(self, *args, **kwargs)
    with oracle_module.LOCKS[self]:
      oracle_module.THREADS[self] = thread
      try:
        return method(self, *args, **kwargs)
      finally:
        oracle_module.THREADS[self] = None

  return wrapped


def mixop_name(index: int) -> str:
  return f"mixop_{index:02d}"


def potential_name(choice: int) -> str:
  return f"potential_{choice}"


class PCNASOracle(keras_tuner.Oracle):
  """Keeps the pool of partial models and proposes its extensions as trials.

  Args:
    num_choices: operators per mixop.
    pool_size: P, the number of partial models kept.
    lease_timeout: seconds a handed-out trial may stay unreported before another worker gets it; None
      never takes a trial back (one process scores everything).
    **kwargs: passed to `keras_tuner.Oracle`.
  """

  def __init__(self, num_choices, pool_size, lease_timeout=None, **kwargs):
    super().__init__(objective=keras_tuner.Objective("potential", "max"), **kwargs)
    self.verbose = 0
    self.num_choices, self.pool_size = tuple(num_choices), pool_size
    for index, count in enumerate(self.num_choices):
      self.hyperparameters.Choice(mixop_name(index), list(range(count)))
    self.pool = []        # partial models, best first
    self.interval = -1    # the mixop being decided; -1 before the first interval
    self.pending = []     # pool members whose extensions are not handed out yet
    self.potentials = {}  # candidate (as a string key) -> potential, this interval
    self.history = []     # one record per finished interval
    self.completions = {}  # pool member (as a string key) -> its trial's completions, until handed out
    self.lease_timeout = lease_timeout
    self.leases = {}       # trial_id -> time.monotonic() deadline; this process's clock, not state
    self.expired_leases, self.late_reports = 0, 0

  # The interval protocol -----------------------------------------------------------------------------

  @_synchronized
  def start_interval(self, completer=None):
    """Begins scoring the extensions of the pool by the next mixop.

    Args:
      completer: candidate (tuple) -> list of full paths extending it; called for every candidate, in
        pool order, before any trial is handed out. None sends no completions (the scorer draws them).
    """
    if self.interval_open:
      raise RuntimeError(f"Interval {self.interval} is still being scored.")
    self.interval += 1
    members = self.pool or [()]
    self.pending = [list(member) for member in members]
    self.potentials = {}
    self.completions = {}
    if completer is not None:
      for member in members:
        paths = [[[int(c) for c in path] for path in completer(tuple(member) + (choice,))]
                 for choice in range(self.num_choices[self.interval])]
        self.completions[pool_lib.key(member)] = json.dumps(paths, separators=(",", ":"))

  @property
  def interval_open(self) -> bool:
    return self.interval >= 0 and len(self.history) <= self.interval

  @property
  def finished(self) -> bool:
    return len(self.history) == len(self.num_choices)

  def candidates(self):
    return pool_lib.extend(self.pool, self.num_choices) if self.pool or self.interval == 0 else []

  # keras-tuner hooks ------------------------------------------------------------------------------------

  def populate_space(self, trial_id):
    if self.finished:
      return {"status": trial_module.TrialStatus.STOPPED}
    if not self.pending:
      return {"status": trial_module.TrialStatus.IDLE}
    member = self.pending.pop(0)
    values = {mixop_name(index): choice for index, choice in enumerate(member)}
    values[EXTEND] = self.interval
    if pool_lib.key(member) in self.completions:
      values[COMPLETIONS] = self.completions.pop(pool_lib.key(member))
    return {"status": trial_module.TrialStatus.RUNNING, "values": values}

  @_synchronized
  def create_trial(self, tuner_id):
    self._expire_leases()
    trial = super().create_trial(tuner_id)
    if trial.status == trial_module.TrialStatus.RUNNING and self.lease_timeout is not None:
      self.leases[trial.trial_id] = time.monotonic() + self.lease_timeout
    return trial

  def _expire_leases(self):
    now = time.monotonic()
    for tuner_id, trial in list(self.ongoing_trials.items()):
      if self.leases.get(trial.trial_id, now) < now:
        del self.ongoing_trials[tuner_id], self.leases[trial.trial_id]
        self.tuner_ids.discard(tuner_id)  # taken for dead: the chief will not wait for it at the end
        # keras-tuner's queue of trials to run again: `create_trial` hands these out first.
        self._retry_queue.append(trial.trial_id)
        self.expired_leases += 1
        print(f"Trial {trial.trial_id} was not reported by {tuner_id!r} within {self.lease_timeout} s; "
              f"it goes to the next worker.", flush=True)

  def _reported(self, trial_id) -> bool:
    return trial_id in self.end_order  # keras-tuner's record of the trials that ended

  @_synchronized
  def update_trial(self, trial_id, metrics, step=0):
    if self._reported(trial_id):  # a late report: the trial was scored by another worker
      return self.trials[trial_id]
    return super().update_trial(trial_id, metrics, step)

  @_synchronized
  def end_trial(self, trial):
    if self._reported(trial.trial_id):
      self.late_reports += 1
      for tuner_id, ongoing in list(self.ongoing_trials.items()):
        if ongoing.trial_id == trial.trial_id:
          del self.ongoing_trials[tuner_id]
      return
    self.leases.pop(trial.trial_id, None)
    if trial.trial_id in self._retry_queue:  # reported after its lease expired, before a re-run
      self._retry_queue.remove(trial.trial_id)
    trial.hyperparameters.values.pop(COMPLETIONS, None)  # scored: the paths are not needed any more
    super().end_trial(trial)
    trial = self.trials[trial.trial_id]  # the Oracle's copy holds the metrics a worker reported
    if trial.status != trial_module.TrialStatus.COMPLETED:
      return
    member = member_of(trial.hyperparameters.values)
    for choice in range(self.num_choices[self.interval]):
      name = potential_name(choice)
      metric = trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None
      self.potentials[pool_lib.key(member + (choice,))] = float("nan") if metric is None else float(metric)
    if len(self.potentials) == len(self.candidates()):
      self._update_pool()

  def _update_pool(self):
    candidates = self.candidates()
    scores = [self.potentials[pool_lib.key(c)] for c in candidates]
    self.pool = pool_lib.top_p(candidates, scores, self.pool_size)
    self.history.append({"interval": self.interval,
                         "candidates": [list(c) for c in candidates], "potentials": scores,
                         "pool": [list(m) for m in self.pool],
                         "pool_potentials": [self.potentials[pool_lib.key(m)] for m in self.pool]})

  def get_state(self):
    state = super().get_state()
    state.update({"pool": [list(m) for m in self.pool], "interval": self.interval,
                  "pending": self.pending, "potentials": self.potentials, "history": self.history,
                  "completions": self.completions, "expired_leases": self.expired_leases,
                  "late_reports": self.late_reports})
    return state

  def set_state(self, state):
    super().set_state(state)
    self.pool = [tuple(m) for m in state["pool"]]
    self.interval, self.pending = state["interval"], state["pending"]
    self.potentials, self.history = state["potentials"], state["history"]
    self.completions = state.get("completions", {})
    self.expired_leases = state.get("expired_leases", 0)
    self.late_reports = state.get("late_reports", 0)
    # As `keras_tuner.Oracle.reload` does: trials handed out before a restart are run again, by
    # whoever asks first (their completions are in their values).
    for trial in self.ongoing_trials.values():
      if not self._reported(trial.trial_id) and trial.trial_id not in self._retry_queue:
        self._retry_queue.append(trial.trial_id)
    self.ongoing_trials, self.leases = {}, {}

  @_synchronized
  def snapshot(self):
    """(state, {trial_id: trial state}), taken under the Oracle's lock while workers may report."""
    return self.get_state(), {tid: t.get_state() for tid, t in self.trials.items()}

  @_synchronized
  def restore(self, state, trials) -> None:
    """The inverse of `snapshot`: the Oracle as it was when the snapshot was taken."""
    self.trials = {tid: trial_module.Trial.from_state(s) for tid, s in trials.items()}
    self.set_state(state)
    self.pool = [tuple(member) for member in self.pool]


def report(oracle, trial, metrics) -> None:
  """Reports a scored trial: its `metrics` (potentials), then its end, as keras-tuner's protocol has it.

  `oracle` is a `PCNASOracle` or a keras-tuner `OracleClient` of one (the same two calls). A candidate
  with no feasible completion has no potential (NaN): it is not reported, which `end_trial` reads as
  NaN as well, since keras-tuner's metric tracker warns on an all-NaN metric.
  """
  oracle.update_trial(trial.trial_id, {name: value for name, value in metrics.items()
                                       if math.isfinite(value)})
  trial.status = "COMPLETED"
  oracle.end_trial(trial)


def member_of(values) -> tuple:
  """The pool member a trial extends, from its hyperparameter values."""
  return tuple(int(values[mixop_name(index)]) for index in range(int(values[EXTEND])))
