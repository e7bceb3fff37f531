"""Files as every part of the project writes and reads them, on any file system TensorFlow's
`tf.io.gfile` knows: local paths, `gs://` (and `s3://`, `hdfs://` through plugins), `ram://` in tests.

JSON, pages and pictures are replaced atomically where the file system can rename: written to a
temporary file in the same directory (fsynced, 0644 on local disk), then renamed over the old one, so a
reader or a crash never sees half a file. On an object store a rename is a copy and a delete; a single
object is still written whole, so a reader sees the old file or the new one (or, for a moment, none).
JSON is read with one clear sentence when missing or corrupt; output directories are checked for
writability before any work starts. Local paths (no `scheme://`) keep plain `os` calls, and TensorFlow
is imported only for the others.
"""

import contextlib
import json
import os
import shutil
import tempfile
import uuid

import numpy as np

from pcnas_tf import errors


def is_local(path: str) -> bool:
  """Whether `path` is on the local file system (it has no `scheme://` prefix)."""
  return "://" not in str(path)


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only paths with a scheme need it)
  return tf.io.gfile


def _op_error():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.errors.OpError


def absolute(path: str) -> str:
  """`path` made absolute; a path with a scheme is absolute already (`os.path.abspath` mangles it)."""
  return os.path.abspath(path) if is_local(path) else path


def exists(path: str) -> bool:
  return os.path.exists(path) if is_local(path) else _gfile().exists(path)


def isdir(path: str) -> bool:
  return os.path.isdir(path) if is_local(path) else _gfile().isdir(path)


def isfile(path: str) -> bool:
  return os.path.isfile(path) if is_local(path) else exists(path) and not isdir(path)


def listdir(path: str) -> list[str]:
  """The names in directory `path` (without a trailing `/`, which gfile gives sub-directories)."""
  return os.listdir(path) if is_local(path) else [name.rstrip("/") for name in _gfile().listdir(path)]


def mtime(path: str) -> float:
  """When `path` was last modified, in seconds since the epoch (0 where the file system keeps none)."""
  return os.path.getmtime(path) if is_local(path) else _gfile().stat(path).mtime_nsec / 1e9


def open_file(path: str, mode: str = "r"):
  """`open(path, mode)`, on any file system."""
  return open(path, mode) if is_local(path) else _gfile().GFile(path, mode)  # pylint: disable=consider-using-with


def read_bytes(path: str) -> bytes:
  with open_file(path, "rb") as f:
    return f.read()


def write_json(path: str, data, indent: int = 2) -> None:
  """Writes JSON atomically: a temporary file in the same directory, fsynced, then a rename."""
  write_text(path, json.dumps(data, indent=indent, sort_keys=True, default=_to_plain))


def write_text(path: str, text: str) -> None:
  """Writes `text` (UTF-8) atomically, as `write_json` does."""
  write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` atomically: a reader sees the old file or the new one, never a part."""
  if not is_local(path):
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    with _gfile().GFile(temporary, "wb") as f:
      f.write(data)
    _gfile().rename(temporary, path, overwrite=True)
    return
  directory = os.path.dirname(os.path.abspath(path))
  with tempfile.NamedTemporaryFile("wb", dir=directory, suffix=".tmp", delete=False) as f:
    f.write(data)
    # tempfile creates the file 0600; results, pages and pictures are read by others too (a web
    # server, a colleague), as a plain `open` would have made them.
    os.fchmod(f.fileno(), 0o644)
    f.flush()
    os.fsync(f.fileno())
  os.replace(f.name, path)


def _to_plain(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (tuple, set)):
    return list(value)
  raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_json(path: str, what: str, error_class=errors.UserError):
  """The JSON in `path`; a missing, unreadable or corrupt file raises `error_class` naming `what`
  (a noun phrase such as "latency table") and the reason."""
  try:
    return json.loads(read_bytes(path))
  except OSError as error:
    raise error_class(f"Cannot read {what} {path!r}: {error.strerror}.") from error
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise error_class(f"{what[0].upper()}{what[1:]} {path!r} is corrupt (not valid JSON: {error}).") from error
  except _op_error() as error:
    raise error_class(f"Cannot read {what} {path!r}: {_reason(error)}.") from error


def _reason(error) -> str:
  """What a gfile error says, as `strerror` would (a missing file's message is often empty)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if isinstance(error, tf.errors.NotFoundError):
    return "No such file or directory"
  return error.message or type(error).__name__


def remove(path: str) -> None:
  """Removes a file or a directory tree at `path`; nothing if there is none."""
  if not is_local(path):
    if _gfile().isdir(path):
      _gfile().rmtree(path)
    elif _gfile().exists(path):
      _gfile().remove(path)
  elif os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path)
  elif os.path.lexists(path):
    os.remove(path)


def check_writable_dir(path: str, what: str = "Work directory", flag: str = "--work_dir") -> None:
  """Raises `UserError` unless `path` is a writable directory or could be created; writes nothing.

  `what` names the directory in the message ("Work directory") and `flag` the setting to change. On a
  file system with a scheme (`gs://...`) only "is not a directory" is checked: permissions there are
  the store's (IAM, ACLs), which cannot be asked ahead without writing, so a refused write fails later.
  """
  if not is_local(path):
    if _gfile().exists(path) and not _gfile().isdir(path):
      raise errors.UserError(f"{what} {path!r} exists and is not a directory; choose another {flag}.")
    return
  if os.path.exists(path):
    if not os.path.isdir(path):
      raise errors.UserError(f"{what} {path!r} exists and is not a directory; choose another {flag}.")
    if not os.access(path, os.W_OK | os.X_OK):
      raise errors.UserError(f"{what} {path!r} is not writable; choose another {flag}.")
    return
  ancestor = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(ancestor):
    ancestor = os.path.dirname(ancestor)
  if not os.path.isdir(ancestor) or not os.access(ancestor, os.W_OK | os.X_OK):
    reason = "is not writable" if os.path.isdir(ancestor) else "is a file, not a directory"
    raise errors.UserError(f"Cannot create {what.lower()} {path!r}: {ancestor!r} {reason}; choose "
                           f"another {flag}.")


def make_dir(path: str, what: str = "Work directory") -> None:
  """Creates `path` (and its parents); raises `UserError` naming the reason if that fails."""
  try:
    if is_local(path):
      os.makedirs(path, exist_ok=True)
    else:
      _gfile().makedirs(path)
  except OSError as error:
    raise errors.UserError(f"Cannot create {what.lower()} {path!r}: {error.strerror}.") from error
  except _op_error() as error:
    raise errors.UserError(f"Cannot create {what.lower()} {path!r}: {_reason(error)}.") from error


@contextlib.contextmanager
def local_copy(path: str):
  """Yields a local path holding the file at `path`: `path` itself if local, else a temporary copy (for
  readers that open only local files: `zipfile` with h5py inside a `.keras` archive, a subprocess)."""
  if is_local(path):
    yield path
    return
  with tempfile.TemporaryDirectory(prefix="pcnas_") as directory:
    local = os.path.join(directory, os.path.basename(path))
    _gfile().copy(path, local)
    yield local


@contextlib.contextmanager
def written_locally(path: str):
  """Yields a local path to write one file to, then puts that file at `path` atomically (for writers
  that write only local files: tf2onnx, Keras' `.keras` archive written in place)."""
  beside = os.path.dirname(os.path.abspath(path)) if is_local(path) else None  # a rename, not a copy
  with tempfile.TemporaryDirectory(prefix=".pcnas-", dir=beside) as directory:
    local = os.path.join(directory, os.path.basename(path))
    yield local
    if is_local(path):
      os.replace(local, path)
    else:
      write_bytes(path, read_bytes(local))
