"""The one optimizer setting of every training here: Nesterov SGD, a cosine learning-rate decay and
the paper's L2 on kernels. The search's `PathSGD` and retraining's Keras `SGD` both take it."""

import dataclasses

import keras

from pcnas_tf import errors


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Nesterov SGD with a cosine decay from `learning_rate` to `final_learning_rate`; `weight_decay`
  is the L2 coefficient on convolution and dense kernels (paper section 4.1)."""
  learning_rate: float = 0.1
  final_learning_rate: float = 5e-4
  momentum: float = 0.9
  weight_decay: float = 1e-4

  def validate(self) -> "OptimizerConfig":
    """Checks every setting; returns self. Raises UserError naming the first bad one and its flag."""
    _check(self.learning_rate > 0, f"Learning rate (--learning_rate) is {self.learning_rate}; it "
           f"must be > 0.")
    _check(self.final_learning_rate > 0, f"Final learning rate (--final_learning_rate) is "
           f"{self.final_learning_rate}; it must be > 0.")
    _check(self.final_learning_rate <= self.learning_rate, f"Final learning rate "
           f"{self.final_learning_rate} is above the initial {self.learning_rate}; the cosine schedule "
           f"decays, so use at most that.")
    _check(0 <= self.momentum < 1, f"Momentum (--momentum) is {self.momentum}; allowed: 0.0 <= value "
           f"< 1.0.")
    _check(0 <= self.weight_decay <= 1, f"Weight decay (--weight_decay) is {self.weight_decay}; "
           f"allowed: 0.0 <= value <= 1.0.")
    return self

  def schedule(self, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """The cosine decay over `total_steps` steps."""
    return keras.optimizers.schedules.CosineDecay(
        self.learning_rate, max(1, total_steps), alpha=self.final_learning_rate / self.learning_rate)


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise errors.UserError(message)
