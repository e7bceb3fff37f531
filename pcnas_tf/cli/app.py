"""How binaries run: absl's app with user errors printed as one sentence and exit status 2, and Ctrl-C
as one line on how to resume and exit status 130.

`--verbose` (or PCNAS_VERBOSE=1) shows the traceback too. Defined here, with the binaries, so that
importing a library module defines no flag.
"""

import os
import sys
import traceback

from absl import app
from absl import flags
from absl import logging

from pcnas_tf import errors
from pcnas_tf.training import epochs

flags.DEFINE_boolean("verbose", False, "Show tracebacks of user errors.")


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
    except errors.UserError as error:
      report(error)
      sys.exit(2)
    except KeyboardInterrupt as interrupt:  # Ctrl-C: say what was kept, no traceback
      if os.environ.get("PCNAS_VERBOSE") == "1" or flags.FLAGS.verbose:
        traceback.print_exception(interrupt)
      print(f"\n{interrupt}" if isinstance(interrupt, epochs.Interrupted) else
            "\nInterrupted. Run the same command again to resume from the last checkpoint.",
            file=sys.stderr)
      sys.exit(130)

  app.run(guarded)
