"""`PCNASOracle`: the progressive partial-model pool as a keras-tuner Oracle (paper 3.3, Algorithm 2).

The Oracle decides, the search loop runs. At the start of interval l the Oracle extends its pool by every
operator of mixop l (`pool.extend`) and hands the candidates out as trials. A trial is one candidate, or,
with `trial_completions`, one chunk of at most that many of its completions, so that any number of
evaluation workers up to (candidates x chunks) stays busy. A trial's hyperparameters are the candidate's
choices (`mixop_00` .. `mixop_<l>`), `extend` (l, the mixop being decided), `first` (the index of its
first completion) and `completions` (JSON). The scorer reports the chunk's `correct` predictions and
`images`; the candidate's potential is their sums over its chunks (`pool.potential_of`), which are
integers: the pool does not depend on how the completions were split, who scored which chunk, or the
order the reports arrive in. Without completions (`start_interval()` with no completer) the scorer draws
them and reports `potential` itself. When every candidate of the interval is scored, the top P
(`pool.top_p`) form the new pool. The Oracle never trains; its state travels through
`get_state`/`set_state` as plain data.

Completions travel with the trial: `start_interval(completer)` draws every candidate's completions at
once, in pool order, so whoever scores a trial, this process, a training task or an evaluation worker
(`remote_eval`), scores the same paths.

Served to evaluation workers over keras-tuner's gRPC service, trials are leased: a trial not reported
within `lease_timeout` seconds goes back to keras-tuner's own retry queue (the one `Oracle.reload` fills
with the trials a crash interrupted), and the next worker that asks gets it. The first report of a trial
counts; a late one, from a worker taken for dead, is ignored. So every candidate is scored once whatever
the workers do. The methods the chief's own thread calls while workers are served take keras-tuner's
per-Oracle lock, as the gRPC handlers do (`_synchronized`).
"""

import functools
import itertools
import json
import math
import threading
import time

import keras_tuner
from keras_tuner.src.engine import oracle as oracle_module
from keras_tuner.src.engine import trial as trial_module

from pcnas_tf import errors
from pcnas_tf.searcher import pool as pool_lib

EXTEND = "extend"
FIRST = "first"
COMPLETIONS = "completions"
CORRECT = "correct"
IMAGES = "images"
POTENTIAL = "potential"
# Tuner ids of a cluster's training tasks pulling trials (the end of the search waits for none of them:
# the cluster's collectives tell them).
TRAINING_TASK = "task:"
NO_POTENTIAL = "no_potential"  # reported, with a potential of -1, when a candidate has none (NaN)


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


def chunks(paths, size):
  """(first, paths) of each trial a candidate's completions make, at most `size` (None: all) each; one
  empty trial for a candidate without completions, which then has no potential."""
  size = size or max(1, len(paths))
  return [(first, paths[first:first + size]) for first in range(0, max(1, len(paths)), size)]


class PCNASOracle(keras_tuner.Oracle):
  """Keeps the pool of partial models and proposes its extensions as trials.

  Args:
    num_choices: operators per mixop.
    pool_size: P, the number of partial models kept.
    lease_timeout: seconds a handed-out trial may stay unreported before another worker gets it; None
      never takes a trial back (one process scores everything).
    trial_completions: the most completions one trial carries (a candidate's are split into chunks);
      None: one trial per candidate. It does not change the pool, only how finely work is handed out.
    **kwargs: passed to `keras_tuner.Oracle`.
  """

  def __init__(self, num_choices, pool_size, lease_timeout=None, trial_completions=None, **kwargs):
    super().__init__(objective=keras_tuner.Objective(POTENTIAL, "max"), **kwargs)
    self.verbose = 0
    self.num_choices, self.pool_size = tuple(num_choices), pool_size
    for index, count in enumerate(self.num_choices):
      self.hyperparameters.Choice(mixop_name(index), list(range(count)))
    self.pool = []        # partial models, best first
    self.interval = -1    # the mixop being decided; -1 before the first interval
    self.pending = []     # [candidate, first, completions JSON or None] of trials not handed out yet
    self.potentials = {}  # candidate (as a string key) -> potential, once all its trials are scored
    self.pieces = []      # [candidate key, first] of each trial of the interval, in the order drawn
    self.results = []     # per piece: None until scored, then [correct, images] (or [potential])
    self.history = []     # one record per finished interval
    self.lease_timeout, self.trial_completions = lease_timeout, trial_completions
    self.leases = {}       # trial_id -> time.monotonic() deadline; this process's clock, not state
    self.expired_leases, self.late_reports = 0, 0
    self.scored_by = {}  # who reported the trials that counted: tuner id (this process': its own) -> count
    self._local_ids = itertools.count()  # tuner ids of trials taken by this process (`take_trials`)
    self.last_asked = None  # time.monotonic() when a worker last asked for a trial; not state
    self._ended = set()     # `end_order` as a set (`_reported`)
    self._index_pieces()

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
    self.potentials, self.pieces, self.pending = {}, [], []
    for candidate in self.candidates():
      if completer is None:
        pieces = [(0, None)]
      else:
        paths = [[int(c) for c in path] for path in completer(tuple(candidate))]
        pieces = [(first, json.dumps(chunk, separators=(",", ":")))
                  for first, chunk in chunks(paths, self.trial_completions)]
      self.pieces.extend([pool_lib.key(candidate), first] for first, _ in pieces)
      self.pending.extend([list(candidate), first, text] for first, text in pieces)
    self.results = [None] * len(self.pieces)
    self._index_pieces()

  @property
  def interval_open(self) -> bool:
    return self.interval >= 0 and len(self.history) <= self.interval

  @property
  def finished(self) -> bool:
    return len(self.history) == len(self.num_choices)

  @property
  def interval_trials(self) -> int:
    """Trials the interval was split into."""
    return len(self.pieces)

  @property
  def trials_scored(self) -> int:
    """Trials of the interval scored so far."""
    return sum(result is not None for result in self.results)

  def piece_of(self, values) -> int:
    """The index among the interval's trials (`pieces`) of the trial with hyperparameter `values`."""
    return self._piece_index[(pool_lib.key(candidate_of(values)), int(values.get(FIRST, 0)))]

  def _index_pieces(self):
    self._piece_index = {tuple(piece): i for i, piece in enumerate(self.pieces)}
    self._pieces_of = {}  # candidate key -> the indices of its pieces
    for i, (key, _) in enumerate(self.pieces):
      self._pieces_of.setdefault(key, []).append(i)

  @_synchronized
  def results_row(self):
    """The interval's results as one row: `correct, images` per piece, -1 for the pieces not scored
    here (`fill_results` takes the element-wise maximum of such rows from every task)."""
    row = []
    for result in self.results:
      row.extend(result if result is not None and len(result) == 2 else (-1, -1))
    return row

  @_synchronized
  def fill_results(self, row):
    """Adds the pieces of `row` (`results_row`'s layout) not scored here yet, as if reported."""
    for index, result in enumerate(self.results):
      correct, images = row[2 * index], row[2 * index + 1]
      if result is None and images >= 0:
        self._add(index, [int(correct), int(images)])
    self.pending = []

  def candidates(self):
    return pool_lib.extend(self.pool, self.num_choices) if self.pool or self.interval == 0 else []

  # keras-tuner hooks ------------------------------------------------------------------------------------

  def populate_space(self, trial_id):
    if self.finished:
      return {"status": trial_module.TrialStatus.STOPPED}
    if not self.pending:
      return {"status": trial_module.TrialStatus.IDLE}
    candidate, first, completions = self.pending.pop(0)
    values = {mixop_name(index): choice for index, choice in enumerate(candidate)}
    values[EXTEND], values[FIRST] = self.interval, first
    if completions is not None:
      values[COMPLETIONS] = completions
    return {"status": trial_module.TrialStatus.RUNNING, "values": values}

  # keras-tuner writes the whole Oracle state and the trial to the project directory on every call of a
  # trial (`save`, `_save_trial`): with hundreds of trials per interval, each carrying its completions,
  # that is O(trials x state) per interval and the chief's bottleneck. The search's checkpoint holds
  # the Oracle's state; here the project directory is written once per interval, when the pool changes.
  def save(self):
    if not self.interval_open:
      super().save()

  def _save_trial(self, trial):
    if not self.interval_open:
      super()._save_trial(trial)

  def _save_interval(self):
    # The interval's trials only: those of earlier intervals were written when theirs closed and do not
    # change after (a late report is ignored); writing every trial again made each close O(search).
    for trial in self.trials.values():
      if int(trial.hyperparameters.values.get(EXTEND, self.interval)) == self.interval:
        super()._save_trial(trial)
    super().save()

  # keras-tuner's bookkeeping, at the cost of a trial handed out and reported ------------------------------

  def _record_values(self, trial):
    """Nothing: keras-tuner records each trial's values (first filling every mixop not decided yet
    with a random choice, a `random.Random` seeded per mixop) only so that its random search does not
    draw a combination twice. The pool, not that record, decides what is drawn here."""

  def _check_consecutive_failures(self):
    """keras-tuner's check, on the failures that end `end_order`: it scans the whole order on every
    report, O(trials so far) a trial; a run of failures earlier in the order was checked as it ended."""
    failures = 0
    for trial_id in reversed(self.end_order):
      if self.trials[trial_id].status != trial_module.TrialStatus.FAILED:
        break
      failures += 1
    if self.max_consecutive_failed_trials and failures >= self.max_consecutive_failed_trials:
      raise RuntimeError(f"Number of consecutive failures exceeded the limit of "
                         f"{self.max_consecutive_failed_trials}.\n"
                         + (self.trials[self.end_order[-1]].message or ""))

  @_synchronized
  def create_trial(self, tuner_id):
    self.last_asked = time.monotonic()
    self._expire_leases()
    trial = super().create_trial(tuner_id)
    if trial.status == trial_module.TrialStatus.RUNNING and self.lease_timeout is not None:
      self.leases[trial.trial_id] = time.monotonic() + self.lease_timeout
    elif tuner_id.startswith(TRAINING_TASK):
      self.tuner_ids.discard(tuner_id)
    return trial

  @property
  def workers_holding_trials(self) -> int:
    """Workers holding a trial they have not reported (trials taken by this process not counted)."""
    return sum("#" not in tuner_id for tuner_id in self.ongoing_trials)

  @_synchronized
  def take_trials(self, tuner_id, limit=None):
    """Hands out up to `limit` (None: every) trials not out yet, at once, to a scorer in this process
    (which scores them together, sharing their common work, and reports each). Not leased."""
    taken = []
    while limit is None or len(taken) < limit:
      local_id = f"{tuner_id}#{next(self._local_ids)}"
      trial = super().create_trial(local_id)
      self.tuner_ids.discard(local_id)  # not a worker the end of the search waits for
      if trial.status != trial_module.TrialStatus.RUNNING:
        break
      taken.append(trial)
    return taken

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
    # keras-tuner's record of the trials that ended is a list, searched on every report; a set of it,
    # grown as `end_trial` appends to the list (emptied when `set_state` replaces the list).
    if len(self._ended) < len(self.end_order):
      self._ended.update(self.end_order[len(self._ended):])
    return trial_id in self._ended

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
    scorer = next((t for t, o in self.ongoing_trials.items() if o.trial_id == trial.trial_id), "?")
    scorer = scorer.split("#")[0]  # trials taken by this process (`take_trials`) count as one scorer
    self.scored_by[scorer] = self.scored_by.get(scorer, 0) + 1
    super().end_trial(trial)
    trial = self.trials[trial.trial_id]  # the Oracle's copy holds the metrics a worker reported
    if trial.status != trial_module.TrialStatus.COMPLETED:
      return
    metrics = trial.metrics
    value = lambda name: metrics.get_last_value(name) if metrics.exists(name) else None
    if value(IMAGES) is not None:
      result = [int(value(CORRECT)), int(value(IMAGES))]
    else:  # scored by a scorer that drew the completions itself; NaN when not reported
      result = [float("nan") if value(NO_POTENTIAL) else float(value(POTENTIAL))]
    self._add(self.piece_of(trial.hyperparameters.values), result)

  def _add(self, index, result):
    """Records the result of piece `index`; a candidate's potential once all its pieces are in."""
    if self.results[index] is not None:
      return
    self.results[index] = result
    key = self.pieces[index][0]
    mine = [self.results[i] for i in self._pieces_of[key]]
    if any(r is None for r in mine):
      return
    if len(result) == 1:
      self.potentials[key] = result[0]
    else:
      self.potentials[key] = pool_lib.potential_of(sum(r[0] for r in mine), sum(r[1] for r in mine))
    if len(self.potentials) == len(self.candidates()):
      self._update_pool()
      self._save_interval()

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
                  "pending": self.pending, "potentials": self.potentials, "pieces": self.pieces,
                  "results": self.results, "history": self.history,
                  "expired_leases": self.expired_leases, "late_reports": self.late_reports,
                  "scored_by": self.scored_by})
    return state

  def set_state(self, state):
    super().set_state(state)
    self.pool = [tuple(m) for m in state["pool"]]
    self.interval, self.pending = state["interval"], state["pending"]
    self.potentials, self.history = state["potentials"], state["history"]
    if "pieces" not in state and self.interval_open:
      raise errors.UserError(
          "This search was checkpointed in the middle of scoring mixop "
          f"{self.interval + 1} by an earlier pcnas_tf, whose trials (one per pool member) this version "
          "cannot continue; finish it with that version, or start afresh with --overwrite.")
    self.pieces, self.results = state.get("pieces", []), state.get("results", [])
    self._index_pieces()
    self._ended = set()  # `end_order` was replaced
    self.expired_leases = state.get("expired_leases", 0)
    self.late_reports = state.get("late_reports", 0)
    self.scored_by = state.get("scored_by", {})
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
  """Reports a scored trial: its `metrics`, then its end, as keras-tuner's protocol has it.

  `oracle` is a `PCNASOracle` or a keras-tuner `OracleClient` of one (the same two calls). A potential
  that is NaN (no feasible completion) goes as -1 with `no_potential`, which `end_trial` reads as NaN:
  keras-tuner needs its objective in every report, and its metric tracker warns on an all-NaN metric.
  """
  metrics = dict(metrics)
  if not math.isfinite(metrics.get(POTENTIAL, math.nan)):
    metrics.update({POTENTIAL: -1.0, NO_POTENTIAL: 1.0})
  oracle.update_trial(trial.trial_id, metrics)
  trial.status = "COMPLETED"
  oracle.end_trial(trial)


def candidate_of(values) -> tuple:
  """The candidate a trial scores (the pool member and its choice at mixop `extend`), from its values."""
  return tuple(int(values[mixop_name(index)]) for index in range(int(values[EXTEND]) + 1))
