"""A run's work directory: one run at a time (the lock), its config.json and what changed since it was
saved, and a fresh start that removes only the run's own outputs. Searches and trainings decide
differently whether a directory resumes (their `check_work_dir`); both prepare it here."""

import fcntl
import hashlib
import json
import os
import tempfile

from pcnas_tf import errors
from pcnas_tf import files

CONFIG_FILE = "config.json"


def saved_config_differences(work_dir: str, config_json: dict, what: str) -> list[str]:
  """How `config_json` differs from the config.json in `work_dir` (`field was X, now Y`)."""
  saved = files.read_json(os.path.join(work_dir, CONFIG_FILE), what)
  return config_differences(saved, json.loads(json.dumps(config_json)))


def prepare(work_dir: str, fresh: bool, outputs, config_json: dict) -> None:
  """Creates `work_dir`; on a `fresh` start removes the earlier run's `outputs` (names in it) first;
  writes `config_json` to its config.json. Call it after every check has passed."""
  files.make_dir(work_dir)
  if fresh:
    for name in outputs:
      files.remove(os.path.join(work_dir, name))
  files.write_json(os.path.join(work_dir, CONFIG_FILE), config_json)


def config_differences(saved, wanted, prefix=""):
  """`field was X, now Y` for every leaf where two JSON configs differ (to tell a user what changed)."""
  if isinstance(saved, dict) and isinstance(wanted, dict):
    keys = sorted(set(saved) | set(wanted))
    return [d for k in keys for d in config_differences(saved.get(k), wanted.get(k), f"{prefix}{k}.")]
  return [] if saved == wanted else [f"{prefix[:-1]} was {saved!r}, now {wanted!r}"]


class WorkDirLock:
  """An exclusive lock on a work directory, so a second search on it is refused.

  `flock` needs a local file: a work directory with a scheme (`gs://...`) is locked through a file in
  this machine's temporary directory named after it, which refuses a second run on this machine only.
  """

  def __init__(self, directory: str):
    self.directory = directory
    self.path = os.path.join(directory, ".lock") if files.is_local(directory) else os.path.join(
        tempfile.gettempdir(), f"pcnas_lock_{hashlib.sha256(directory.encode()).hexdigest()[:16]}")
    self._file = None

  def __enter__(self):
    self._file = open(self.path, "w")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
      self._file.close()
      raise errors.UserError(f"Work directory {self.directory!r} is in use by another "
                             f"run; wait for it or choose another --work_dir.") from error
    return self

  def __exit__(self, *exc):
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()
