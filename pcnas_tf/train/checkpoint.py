"""Atomic checkpoints of a search or a training.

A checkpoint is a directory `ckpt-<n>` holding `variables.npz` (supergraph weights, BN statistics,
optimizer slots) and `state.json` (Oracle state, RNG state, progress). It is written as `ckpt-<n>.tmp`
and renamed, so a crash leaves either the whole checkpoint or nothing; the two newest are kept.
"""

import json
import os
import shutil

import numpy as np

from pcnas_tf import files


_PREFIX = "ckpt-"
_KEEP = 2


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
  files.write_json(os.path.join(staging, "state.json"), state)
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


