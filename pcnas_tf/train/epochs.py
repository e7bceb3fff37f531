"""What every training loop shares: the stop on a diverged loss, and the per-epoch TensorBoard scalars."""

import tensorflow as tf

from pcnas_tf import errors


class DivergedError(errors.UserError):
  """The training loss became NaN or Inf."""


def write_scalars(writer, step: int, scalars: dict) -> None:
  """Writes `{tag: value}` to a TensorBoard summary writer at `step`."""
  with writer.as_default(step=step):
    for tag, value in scalars.items():
      tf.summary.scalar(tag, value)
