"""What defines a search: the settings written to a work directory's config.json and checked on resume."""

import dataclasses

from pcnas_tf import errors
from pcnas_tf.constraints import backends
from pcnas_tf.constraints import constraint as constraint_lib
from pcnas_tf.data import data_config
from pcnas_tf.data import batches as batches_lib
from pcnas_tf.distribute import strategy as strategy_lib
from pcnas_tf.searcher import potential as potential_lib
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import optimizer_config

SAMPLING = ("exact", "rejection")
TRAINING = ("pcnas", "oneshot")
SEARCHES = ("pcnas", "ea", "random")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Everything that defines a search; written to the work directory and checked on resume."""
  space: str = "macro"
  width: float = 1.0
  pool_size: int = 5                 # P
  num_samples: int = 900             # S
  warmup_epochs: int = 100           # Tw
  interval_epochs: int = 5           # Ti
  steps_per_epoch: int = 0           # 0: one pass over the training split
  batch_size: int = 512
  optimizer: optimizer_config.OptimizerConfig = optimizer_config.OptimizerConfig()
  constraint: str = "latency"
  budget: str = "0.5"                # a fraction of [min, max] cost, or an absolute value ("12ms")
  latency_backend: str = "tflite"
  latency_batch: int = 16
  latency_cache_dir: str = "~/.cache/pcnas_tf/latency"
  calibration_archs: int = 40
  sampling: str = "exact"
  bn_mode: str = "batch"
  eval_batch_size: int = 256
  eval_batches: int = 8              # K fixed validation batches; completion j uses batch j % K
  reuse_prefix: bool = True
  training: str = "pcnas"
  search: str = "pcnas"
  strategy: str = "mirrored"
  checkpoint_every: int = 200        # steps
  seed: int = 0
  data: data_config.DataConfig = data_config.DataConfig()

  def validate(self):
    errors.check_at_least(self.pool_size, 1, "Pool size P (--pool_size)")
    errors.check_at_least(self.num_samples, 1, "Evaluation number S (--num_samples)")
    errors.check_at_least(self.warmup_epochs, 0, "Warm-up epochs Tw (--warmup_epochs)")
    errors.check_at_least(self.interval_epochs, 0, "Interval epochs Ti (--interval_epochs)")
    errors.check_at_least(self.steps_per_epoch, 0, "Steps per epoch (--steps_per_epoch)")
    errors.check_at_least(self.batch_size, 1, "Batch size (--batch_size)")
    self.optimizer.validate()
    errors.check_at_least(self.eval_batches, 1, "Evaluation batches (--eval_batches)")
    errors.check_at_least(self.eval_batch_size, 1, "Evaluation batch size (--eval_batch_size)")
    errors.check_at_least(self.checkpoint_every, 1, "Checkpoint interval (--checkpoint_every)")
    errors.check_at_least(self.latency_batch, 1, "Latency batch (--latency_batch)")
    errors.check_at_least(self.calibration_archs, 0, "Calibration networks (--calibration_archs)")
    errors.check_one_of(self.constraint, constraint_lib.KINDS, "Constraint")
    if self.constraint == "latency":
      errors.check_one_of(self.latency_backend, backends.BACKENDS, "Latency backend")
    constraint_lib.check_budget(self.budget, self.constraint)
    errors.check_one_of(self.sampling, SAMPLING, "Sampling")
    errors.check_one_of(self.bn_mode, potential_lib.BN_MODES, "BN mode")
    errors.check_one_of(self.training, TRAINING, "Training")
    errors.check_one_of(self.search, SEARCHES, "Search")
    errors.check_one_of(self.strategy, strategy_lib.STRATEGIES, "Strategy")
    space_lib.get_space(self.space, self.width)
    return self

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, fields: dict) -> "SearchConfig":
    """The config `to_json` wrote (a work directory's config.json, a result's "config").

    Raises:
      UserError: for a config of another pcnas_tf version (other or missing fields).
    """
    try:
      return cls(**{**fields, "data": data_config.DataConfig(**fields["data"]),
                    "optimizer": optimizer_config.OptimizerConfig(**fields["optimizer"])})
    except (KeyError, TypeError) as error:
      raise errors.UserError(f"This search config was written by another pcnas_tf version ({error!r} "
                             f"does not fit); run the search again with this version.") from error


def check_splits(config: SearchConfig, splits: data_config.Splits) -> None:
  """Raises `UserError` unless the data sizes fit the batch sizes: checked before anything is trained.

  Training needs a full batch per pass (unless `steps_per_epoch` is set), and the potentials need
  `eval_batches` batches of `eval_batch_size` from the validation carve-out.
  """
  batches_lib.check_train_batch(splits, config.batch_size, config.steps_per_epoch)
  min_train = 1 if config.steps_per_epoch else config.batch_size
  batches_lib.check_validation_batches(splits, config.data, config.eval_batch_size, config.eval_batches,
                                    min_train)
