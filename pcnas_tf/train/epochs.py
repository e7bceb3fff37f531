"""The one epoch runner of every training loop (supergraph and stand-alone): steps with a progress
bar, the stop on a diverged loss, a hook after each step (checkpoints), and the per-epoch scalars."""

import math
from typing import Callable

import tensorflow as tf
import tqdm

from pcnas_tf import errors


class DivergedError(errors.UserError):
  """The training loss became NaN or Inf."""


def write_scalars(writer, step: int, scalars: dict) -> None:
  """Writes `{tag: value}` to a TensorBoard summary writer at `step`."""
  with writer.as_default(step=step):
    for tag, value in scalars.items():
      tf.summary.scalar(tag, value)


def run_epoch(step: Callable, *, epoch: int, total_epochs: int, steps: int, batch_size: int,
              work_dir: str, start: int = 0, phase: str = "", progress: bool = True,
              after_step: Callable[[int], None] | None = None) -> tuple[float, float]:
  """Runs steps `start`..`steps` - 1 of epoch `epoch` (0-based); returns (mean loss, accuracy).

  Args:
    step: runs one training step and returns (summed loss, number of correct predictions).
    after_step: called with the number of steps done in the epoch after each step (to checkpoint).

  Raises:
    DivergedError: when the loss is NaN or infinite; the last checkpoint in `work_dir` is kept.
  """
  desc = f"epoch {epoch + 1}/{total_epochs}" + (f" ({phase})" if phase else "")
  bar = tqdm.tqdm(total=steps, initial=start, disable=not progress, desc=desc, leave=False)
  loss_sum, correct_sum, done = 0.0, 0, 0
  try:
    for index in range(start, steps):
      loss, correct = step()
      loss = float(loss)
      if not math.isfinite(loss):
        raise DivergedError(f"Training loss became {loss} in epoch {epoch + 1}; the last good checkpoint "
                            f"in {work_dir!r} is kept. Lower --learning_rate or check the data.")
      loss_sum, correct_sum, done = loss_sum + loss, correct_sum + int(correct), done + 1
      bar.update(1)
      bar.set_postfix(loss=f"{loss:.3f}")
      if after_step is not None:
        after_step(index + 1)
  finally:
    bar.close()
  return loss_sum / max(done, 1), correct_sum / max(done * batch_size, 1)
