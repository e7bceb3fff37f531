"""`PCNASOracle`: the progressive partial-model pool as a keras-tuner Oracle (paper 3.3, Algorithm 2).

The Oracle decides, the search loop runs. At the start of interval l the Oracle extends its pool by every
operator of mixop l (`pool.extend`) and hands the candidates out as trials, one trial per pool member
(its N extensions share the member's prefix, so one trial keeps the per-trial overhead at P trials per
interval instead of P x N). A trial's hyperparameters are the member's choices (`mixop_00`, ...) and
`extend`, the mixop being decided; the runner reports `potential_<choice>` for each extension. When every
candidate of the interval is scored, the top P (`pool.top_p`) form the new pool. The Oracle never
trains; its state travels through `get_state`/`set_state` as plain data.
"""

import keras_tuner
from keras_tuner.src.engine import trial as trial_module

from pcnas_tf import pool as pool_lib

EXTEND = "extend"


def mixop_name(index: int) -> str:
  return f"mixop_{index:02d}"


def potential_name(choice: int) -> str:
  return f"potential_{choice}"


class PCNASOracle(keras_tuner.Oracle):
  """Keeps the pool of partial models and proposes its extensions as trials.

  Args:
    num_choices: operators per mixop.
    pool_size: P, the number of partial models kept.
    **kwargs: passed to `keras_tuner.Oracle`.
  """

  def __init__(self, num_choices, pool_size, **kwargs):
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

  # The interval protocol -----------------------------------------------------------------------------

  def start_interval(self):
    """Begins scoring the extensions of the pool by the next mixop."""
    if self.interval_open:
      raise RuntimeError(f"Interval {self.interval} is still being scored.")
    self.interval += 1
    members = self.pool or [()]
    self.pending = [list(member) for member in members]
    self.potentials = {}

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
    return {"status": trial_module.TrialStatus.RUNNING, "values": values}

  def end_trial(self, trial):
    super().end_trial(trial)
    if trial.status != trial_module.TrialStatus.COMPLETED:
      return
    member = member_of(trial.hyperparameters.values)
    for choice in range(self.num_choices[self.interval]):
      metric = trial.metrics.get_last_value(potential_name(choice))
      self.potentials[_key(member + (choice,))] = float("nan") if metric is None else float(metric)
    if len(self.potentials) == len(self.candidates()):
      self._update_pool()

  def _update_pool(self):
    candidates = self.candidates()
    scores = [self.potentials[_key(c)] for c in candidates]
    self.pool = pool_lib.top_p(candidates, scores, self.pool_size)
    self.history.append({"interval": self.interval,
                         "candidates": [list(c) for c in candidates], "potentials": scores,
                         "pool": [list(m) for m in self.pool],
                         "pool_potentials": [self.potentials[_key(m)] for m in self.pool]})

  def get_state(self):
    state = super().get_state()
    state.update({"pool": [list(m) for m in self.pool], "interval": self.interval,
                  "pending": self.pending, "potentials": self.potentials, "history": self.history})
    return state

  def set_state(self, state):
    super().set_state(state)
    self.pool = [tuple(m) for m in state["pool"]]
    self.interval, self.pending = state["interval"], state["pending"]
    self.potentials, self.history = state["potentials"], state["history"]


def member_of(values) -> tuple:
  """The pool member a trial extends, from its hyperparameter values."""
  return tuple(int(values[mixop_name(index)]) for index in range(int(values[EXTEND])))


def _key(partial) -> str:
  return ",".join(str(c) for c in partial)
