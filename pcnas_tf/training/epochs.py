"""The one epoch runner of every training loop (supergraph and stand-alone): steps with a progress
bar, the stop on a diverged loss, a hook after each step (checkpoints), and the per-epoch scalars."""

import contextlib
import math
import signal
import threading
from typing import Callable

import tensorflow as tf
from tqdm import auto as tqdm  # widgets in a notebook, text on a console

from pcnas_tf import errors


# A loss this many times its epoch's first (or 1, if that is smaller) has exploded: cross-entropy starts
# near ln(classes) and falls; a negative or far too large learning rate multiplies it tenfold per step.
EXPLODED = 100.0


class DivergedError(errors.UserError):
  """The training loss became NaN or Inf, or exploded."""


def write_scalars(writer, step: int, scalars: dict) -> None:
  """Writes `{tag: value}` to a TensorBoard summary writer at `step`."""
  with writer.as_default(step=step):
    for tag, value in scalars.items():
      tf.summary.scalar(tag, value)


class Interrupted(KeyboardInterrupt):
  """Ctrl-C, acted on between two steps after the run was saved; the message says how to resume."""


@contextlib.contextmanager
def _sigint_deferred():
  """Turns SIGINT into a flag checked between steps (a second Ctrl-C interrupts at once)."""
  pressed = []
  if threading.current_thread() is not threading.main_thread():
    yield pressed
    return

  def handler(signum, frame):
    if pressed:
      signal.default_int_handler(signum, frame)
    pressed.append(True)

  previous = signal.signal(signal.SIGINT, handler)
  try:
    yield pressed
  finally:
    signal.signal(signal.SIGINT, previous)


def run_epoch(step: Callable, *, epoch: int, total_epochs: int, steps: int, batch_size: int,
              work_dir: str, start: int = 0, phase: str = "", progress: bool = True,
              after_step: Callable[[int], None] | None = None,
              on_interrupt: Callable[[int], None] | None = None) -> tuple[float, float]:
  """Runs steps `start`..`steps` - 1 of epoch `epoch` (0-based); returns (mean loss, accuracy).

  Args:
    step: runs one training step and returns (summed loss, number of correct predictions).
    after_step: called with the number of steps done in the epoch after each step (to checkpoint).
    on_interrupt: with it, Ctrl-C takes effect after the running step: it is called with the steps done
      (to save them), then `Interrupted` is raised; without it, Ctrl-C interrupts as usual.

  Raises:
    DivergedError: when the loss is NaN or infinite, or over `EXPLODED` times the epoch's first (at
      least 1); the last checkpoint in `work_dir` is kept.
  """
  desc = f"epoch {epoch + 1}/{total_epochs}" + (f" ({phase})" if phase else "")
  bar = tqdm.tqdm(total=steps, initial=start, disable=not progress, desc=desc, leave=False)
  loss_sum, correct_sum, done, first = 0.0, 0, 0, None
  deferred = _sigint_deferred() if on_interrupt is not None else contextlib.nullcontext([])
  with deferred as pressed:
    try:
      for index in range(start, steps):
        loss, correct = step()
        loss = float(loss)
        first = loss if first is None else first
        if not math.isfinite(loss) or loss > EXPLODED * max(first, 1.0):
          how = "" if not math.isfinite(loss) else f" (from {first:.4g} at the epoch's first step)"
          raise DivergedError(f"Training loss became {loss:.6g}{how} in epoch {epoch + 1}; the last "
                              f"good checkpoint in {work_dir!r} is kept. Lower --learning_rate or "
                              f"check the data.")
        loss_sum, correct_sum, done = loss_sum + loss, correct_sum + int(correct), done + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        if after_step is not None:
          after_step(index + 1)
        if pressed:
          on_interrupt(index + 1)
          raise Interrupted(f"Interrupted at step {index + 1} of epoch {epoch + 1}, which is saved in "
                            f"{work_dir!r}: run the same command again to resume from there.")
    finally:
      bar.close()
  return loss_sum / max(done, 1), correct_sum / max(done * batch_size, 1)
