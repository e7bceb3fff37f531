"""Atomic checkpoints and results, and the work-directory lock.

A checkpoint is a directory `ckpt-<n>` holding `variables.npz` (supergraph weights, BN statistics,
optimizer slots) and `state.json` (Oracle state, RNG state, progress). It is written as `ckpt-<n>.tmp`
and renamed, so a crash leaves either the whole checkpoint or nothing; the two newest are kept.
"""

import fcntl
import json
import os
import shutil
import tempfile

import numpy as np

from pcnas_tf import errors

_PREFIX = "ckpt-"
_KEEP = 2


def write_json(path: str, data) -> None:
  """Writes JSON atomically: a temporary file in the same directory, then a rename."""
  directory = os.path.dirname(os.path.abspath(path))
  with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as f:
    json.dump(data, f, indent=2, sort_keys=True, default=_to_plain)
    f.flush()
    os.fsync(f.fileno())
  os.replace(f.name, path)


def _to_plain(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (tuple, set)):
    return list(value)
  raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save(directory: str, number: int, arrays, state: dict) -> str:
  """Saves checkpoint `number` with `arrays` (a list of numpy arrays) and `state`; returns its path."""
  final = path_of(directory, number)
  staging = final + ".tmp"
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(staging)
  with open(os.path.join(staging, "variables.npz"), "wb") as f:
    np.savez(f, *arrays)
    f.flush()
    os.fsync(f.fileno())
  write_json(os.path.join(staging, "state.json"), state)
  os.replace(staging, final)
  for old in _checkpoints(directory)[:-_KEEP]:
    shutil.rmtree(old, ignore_errors=True)
  return final


def path_of(directory: str, number: int) -> str:
  """The path of checkpoint `number` in `directory`."""
  return os.path.join(directory, f"{_PREFIX}{number:08d}")


def latest(directory: str):
  """Returns (arrays, state) of the newest complete checkpoint, or None."""
  found = _checkpoints(directory)
  return load(found[-1]) if found else None


def load(path: str):
  """Returns (arrays, state) of the checkpoint at `path`."""
  with np.load(os.path.join(path, "variables.npz")) as npz:
    arrays = [npz[f"arr_{i}"] for i in range(len(npz.files))]
  with open(os.path.join(path, "state.json")) as f:
    return arrays, json.load(f)


def _checkpoints(directory: str):
  if not os.path.isdir(directory):
    return []
  names = sorted(n for n in os.listdir(directory) if n.startswith(_PREFIX) and not n.endswith(".tmp"))
  return [os.path.join(directory, n) for n in names]


def has_checkpoints(directory: str) -> bool:
  """Whether `directory` holds a complete checkpoint (trained state a run could resume from)."""
  return bool(_checkpoints(directory))


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


def config_differences(saved, wanted, prefix=""):
  """`field was X, now Y` for every leaf where two JSON configs differ (to tell a user what changed)."""
  if isinstance(saved, dict) and isinstance(wanted, dict):
    keys = sorted(set(saved) | set(wanted))
    return [d for k in keys for d in config_differences(saved.get(k), wanted.get(k), f"{prefix}{k}.")]
  return [] if saved == wanted else [f"{prefix[:-1]} was {saved!r}, now {wanted!r}"]


class WorkDirLock:
  """An exclusive lock on a work directory, so a second search on it is refused."""

  def __init__(self, directory: str):
    self.path = os.path.join(directory, ".lock")
    self._file = None

  def __enter__(self):
    self._file = open(self.path, "w")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
      self._file.close()
      raise errors.UserError(f"Work directory {os.path.dirname(self.path)!r} is in use by another "
                             f"run; wait for it or choose another --work_dir.") from error
    return self

  def __exit__(self, *exc):
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()
