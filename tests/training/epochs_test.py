"""Tests of the one epoch runner: means, the hook after each step, and the stop on a diverged loss."""

import os
import signal

import pytest

from pcnas_tf.training import epochs


def _steps(losses, correct=2):
  losses = iter(losses)
  return lambda: (next(losses), correct)


def test_means_over_the_steps_run_and_the_hook_after_each():
  done = []
  loss, accuracy = epochs.run_epoch(_steps([2.0, 1.0, 3.0]), epoch=0, total_epochs=1, steps=5,
                                    batch_size=4, work_dir="w", start=2, progress=False,
                                    after_step=done.append)
  assert (loss, accuracy, done) == (2.0, 0.5, [3, 4, 5])


@pytest.mark.parametrize("losses, words", [
    ([2.3, float("nan")], r"became nan in epoch 3; the last good checkpoint in 'w' is kept"),
    ([2.3, 6.8, 428.0, 2.6e4], r"became 428 \(from 2.3 at the epoch's first step\) in epoch 3"),
    ([0.01, 150.0], r"became 150 \(from 0.01"),  # below 1 the yardstick is 1: 100 x 1
])
def test_a_nan_or_exploding_loss_stops_the_epoch(losses, words):
  with pytest.raises(epochs.DivergedError, match=words):
    epochs.run_epoch(_steps(losses), epoch=2, total_epochs=3, steps=len(losses), batch_size=4,
                     work_dir="w", progress=False)


def test_a_falling_or_noisy_loss_runs_to_the_end():
  loss, _ = epochs.run_epoch(_steps([2.3, 40.0, 1.0, 0.5]), epoch=0, total_epochs=1, steps=4,
                             batch_size=4, work_dir="w", progress=False)
  assert loss == pytest.approx(43.8 / 4)


def test_ctrl_c_takes_effect_after_the_running_step_which_is_saved_first():
  saved, ran = [], []

  def step():
    ran.append(len(ran))
    if len(ran) == 2:
      os.kill(os.getpid(), signal.SIGINT)  # arrives while step 2 runs
    return 1.0, 0

  with pytest.raises(epochs.Interrupted, match="Interrupted at step 3 of epoch 1, which is saved in 'w'"):
    epochs.run_epoch(step, epoch=0, total_epochs=1, steps=10, batch_size=4, work_dir="w", start=1,
                     progress=False, on_interrupt=saved.append)
  assert (ran, saved) == ([0, 1], [3])
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
