"""A run's work directory: one run at a time (the lock), and what changed since its config was saved."""

import fcntl
import os

from pcnas_tf import errors


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
