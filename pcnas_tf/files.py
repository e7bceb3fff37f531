"""Files as every part of the project writes and reads them: JSON, pages and pictures replaced
atomically (written to a temporary file, fsynced, renamed, so a reader or a crash never sees half a
file), JSON read with one clear sentence when missing or corrupt; output directories checked for
writability before any work starts."""

import json
import os
import shutil
import tempfile

import numpy as np

from pcnas_tf import errors


def write_json(path: str, data, indent: int = 2) -> None:
  """Writes JSON atomically: a temporary file in the same directory, fsynced, then a rename."""
  write_text(path, json.dumps(data, indent=indent, sort_keys=True, default=_to_plain))


def write_text(path: str, text: str) -> None:
  """Writes `text` (UTF-8) atomically, as `write_json` does."""
  write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` atomically: a reader sees the old file or the new one, never a part."""
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
    with open(path) as f:
      return json.load(f)
  except OSError as error:
    raise error_class(f"Cannot read {what} {path!r}: {error.strerror}.") from error
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise error_class(f"{what[0].upper()}{what[1:]} {path!r} is corrupt (not valid JSON: {error}).") from error


def remove(path: str) -> None:
  """Removes a file or a directory tree at `path`; nothing if there is none."""
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path)
  elif os.path.lexists(path):
    os.remove(path)


def check_writable_dir(path: str, what: str = "Work directory", flag: str = "--work_dir") -> None:
  """Raises `UserError` unless `path` is a writable directory or could be created; writes nothing.

  `what` names the directory in the message ("Work directory") and `flag` the setting to change.
  """
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
    os.makedirs(path, exist_ok=True)
  except OSError as error:
    raise errors.UserError(f"Cannot create {what.lower()} {path!r}: {error.strerror}.") from error
