"""User errors and the way binaries report them.

Library code raises `UserError` (or a subclass) with one sentence that names the bad value and what is
allowed. Binaries run through `run_main`, which prints that sentence without a traceback and exits with
status 2 (absl's `--verbose` flag, or PCNAS_VERBOSE=1, shows the traceback too).
"""

import os
import sys
import traceback

from absl import app
from absl import flags
from absl import logging

flags.DEFINE_boolean("verbose", False, "Show tracebacks of user errors.")


class UserError(ValueError):
  """A mistake a user can make and fix: a bad flag, file, budget or data set."""


def check_at_least(value, low, what: str) -> None:
  """Raises `UserError` unless `value >= low`; `what` names the setting, e.g. "Pool size P (--pool_size)"."""
  if value < low:
    raise UserError(f"{what} is {value}; it must be at least {low}.")


def check_one_of(value, allowed, what: str) -> None:
  """Raises `UserError` unless `value` is one of `allowed`."""
  if value not in allowed:
    raise UserError(f"{what} {value!r} is unknown; allowed: {', '.join(allowed)}.")


def report(error: BaseException) -> None:
  """Prints a user error as one line to stderr (with the traceback when verbose)."""
  verbose = os.environ.get("PCNAS_VERBOSE") == "1" or (flags.FLAGS.is_parsed() and flags.FLAGS.verbose)
  if verbose:
    traceback.print_exception(error)
  print(f"error: {error}", file=sys.stderr)


def run_main(main) -> None:
  """`absl.app.run(main)` with user errors reported in one sentence and exit status 2."""
  # `bazel run` starts binaries in the runfiles tree; relative paths should mean the user's directory.
  if "BUILD_WORKING_DIRECTORY" in os.environ:
    os.chdir(os.environ["BUILD_WORKING_DIRECTORY"])

  def guarded(argv):
    # TensorFlow's and the TFLite converter's INFO lines would bury the progress output.
    if not flags.FLAGS.verbose:
      logging.set_verbosity(logging.WARNING)
    try:
      return main(argv)
    except UserError as error:
      report(error)
      sys.exit(2)

  app.run(guarded)
