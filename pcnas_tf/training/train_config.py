"""What defines a stand-alone training: `TrainConfig`, checked once before anything is trained, written
to the work directory's config.json and compared on resume."""

import dataclasses

from pcnas_tf import errors
from pcnas_tf.data import data_config
from pcnas_tf.distribute import strategy as strategy_lib
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import from_search
from pcnas_tf.training import optimizer_config


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a training run; written to the work directory and checked on resume.

  Defaults are the paper's ImageNet settings (section 4.1). `space` and `arch` say what is trained;
  `search_result` and `pool_rank` only record where they came from.
  """
  space: space_lib.SearchSpace
  arch: tuple[str, ...]
  se: bool = True
  epochs: int = 300
  steps_per_epoch: int = 0           # 0: one pass over the training split
  batch_size: int = 512
  optimizer: optimizer_config.OptimizerConfig = optimizer_config.OptimizerConfig()
  mixup: float = 0.2                 # MixUp's alpha; 0 turns it off
  label_smoothing: float = 0.1
  eval_batch_size: int = 256
  init_from_supergraph: str = ""     # a search work directory, or "" to train from scratch
  strategy: str = "mirrored"
  seed: int = 0
  order_seed: int | None = None      # seeds the batch order and augmentation; None: data.seed
  search_result: str = ""
  pool_rank: int | None = None
  predicted: dict = dataclasses.field(default_factory=dict)  # the search's predicted_<kind> figures
  data: data_config.DataConfig = data_config.DataConfig()

  def validate(self):
    """Checks every setting once; returns self. Raises UserError naming the first bad one."""
    self.space.validate_arch(self.arch)
    errors.check_at_least(self.epochs, 1, "Epochs (--epochs)")
    errors.check_at_least(self.steps_per_epoch, 0, "Steps per epoch (--steps_per_epoch)")
    errors.check_at_least(self.batch_size, 1, "Batch size (--batch_size)")
    errors.check_at_least(self.eval_batch_size, 1, "Evaluation batch size (--eval_batch_size)")
    errors.check_one_of(self.strategy, strategy_lib.STRATEGIES, "Strategy")
    self.optimizer.validate()
    _in_range(self.mixup, 0.0, float("inf"), "MixUp alpha (--mixup)")
    _in_range(self.label_smoothing, 0.0, 1.0, "Label smoothing (--label_smoothing)", high_open=True)
    if self.init_from_supergraph and self.se:
      raise errors.UserError(
          f"--init_from_supergraph={self.init_from_supergraph} needs --nose: the supergraph has no "
          f"squeeze-and-excitation weights to inherit.")
    if self.init_from_supergraph:
      from_search.check_search_checkpoint(self.init_from_supergraph)
    return self

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def _positive(value, what):
  if not value > 0:
    raise errors.UserError(f"{what} is {value}; it must be > 0.")


def _in_range(value, low, high, what, high_open=False):
  if not low <= value <= high or (high_open and value == high):
    raise errors.UserError(f"{what} is {value}; allowed: {low} <= value {'<' if high_open else '<='} "
                           f"{high}.")
