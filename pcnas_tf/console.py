"""What a user sees on the console: TensorFlow's and LiteRT's start-up noise kept off it.

On a CPU machine TensorFlow prints, at import and at its first device query, lines that ask nothing of
the user (oneDNN's round-off note, "Could not find cuda drivers", "failed call to cuInit", the AVX
rebuild hint), and LiteRT prints "Created TensorFlow Lite XNNPACK delegate" at its first interpreter.
They come from native code before `TF_CPP_MIN_LOG_LEVEL` applies (absl's pre-initialisation log), so
the only way to hold them back is to point file descriptor 2 elsewhere while that code runs. Binaries
call `quiet_startup()` before importing TensorFlow; `--verbose` (or PCNAS_VERBOSE=1) keeps it all.
`pcnas_tf.PCNASTuner` calls `quiet_library()` (in a notebook, whose kernel shows file descriptor 2
too), which also keeps TensorFlow's INFO records ("Assets written to ...") off.
What the silenced code printed is replayed if it raises, so a real failure is never hidden.
"""

import contextlib
import os
import sys
import tempfile

_VERBOSE_ARGS = ("--verbose", "-verbose", "--verbose=true", "--verbose=True", "--verbose=1")
_state = {"verbose": False}


def verbose_requested(argv=None) -> bool:
  """Whether the command line (or PCNAS_VERBOSE=1) asks for everything, tracebacks included."""
  argv = sys.argv if argv is None else argv
  return os.environ.get("PCNAS_VERBOSE") == "1" or any(arg in _VERBOSE_ARGS for arg in argv)


def is_verbose() -> bool:
  return _state["verbose"]


@contextlib.contextmanager
def native_stderr_held():
  """Holds what native code writes to stderr in this block; writes it out only if the block raises."""
  if _state["verbose"]:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    except BaseException:
      os.dup2(saved, 2)
      held.seek(0)
      os.write(2, held.read())
      raise
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


def quiet_startup(argv=None) -> None:
  """Imports TensorFlow and queries its devices with the start-up noise held back (unless verbose)."""
  _state["verbose"] = verbose_requested(argv)
  if _state["verbose"]:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  with native_stderr_held():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.list_physical_devices()


def quiet_library() -> None:
  """`quiet_startup` for code that imports the library, not a binary: no command line to read (only
  PCNAS_VERBOSE=1), and TensorFlow's Python logger at WARNING (a binary sets absl's verbosity)."""
  quiet_startup([])
  if not _state["verbose"]:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (imported above)
    tf.get_logger().setLevel("WARNING")
