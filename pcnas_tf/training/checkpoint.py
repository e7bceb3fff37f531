"""Atomic checkpoints of a search or a training, their arrays keyed by variable name.

A checkpoint is a directory `ckpt-<n>` holding `variables.npz` (supergraph or model weights, BN
statistics, optimizer slots, each under its name: `supergraph/stem/conv/kernel`,
`optimizer/momentum/stem/conv/kernel`, ...) and `state.json` (Oracle state, RNG state, progress). It is
written as `ckpt-<n>.tmp` and renamed, so a crash leaves either the whole checkpoint or nothing; the two
newest are kept. Where directories cannot be renamed (an object store, `ram://`), it is written in place
with `state.json` last, and a checkpoint without its `state.json` is not one (see README, "Work
directories on other file systems"). Readers take the arrays they need by name (`assign`), so none depends on an order.
"""

import io
import os

import numpy as np

from pcnas_tf import errors
from pcnas_tf import files


# Names of a search checkpoint's arrays: the supergraph's variables (read by the search, retraining,
# evaluation workers and the studies), the optimizer's momentum per variable, and its step.
SUPERGRAPH, MOMENTUM, ITERATIONS = "supergraph/", "optimizer/momentum/", "optimizer/iterations"
_PREFIX = "ckpt-"
_KEEP = 2
_STATE = "state.json"


class CheckpointMismatchError(errors.UserError):
  """A checkpoint does not fit the model or supergraph it is restored into."""


def name_of(variable) -> str:
  """A variable's name in checkpoints: its Keras path (`stem/conv/kernel`), else its TF name."""
  return getattr(variable, "path", None) or variable.name.split(":")[0]


def named(variables, prefix: str) -> list:
  """(prefix + name, variable) for each of `variables`: what `arrays_of` saves and `assign` restores."""
  return [(prefix + name_of(v), v) for v in variables]


def arrays_of(pairs) -> dict:
  """{name: value} of (name, variable) pairs; two variables of one name are an error, never silent."""
  arrays = {name: np.asarray(variable.numpy()) for name, variable in pairs}
  if len(arrays) != len(pairs):
    raise ValueError("Checkpointed variables do not have distinct names; cannot save them.")
  return arrays


def assign(pairs, arrays: dict, source: str, what: str) -> None:
  """Assigns `arrays[name]` to the variable of each (name, variable) pair, after checking every name
  and shape.

  Raises:
    CheckpointMismatchError: naming the first missing or misshapen array; nothing is assigned then.
  """
  for name, variable in pairs:
    value = arrays.get(name)
    problem = (f"it has no array {name!r}" if value is None else
               f"it has shape {value.shape} for {name}, which has shape {tuple(variable.shape)}"
               if tuple(variable.shape) != value.shape else None)
    if problem:
      raise CheckpointMismatchError(f"Checkpoint in {source!r} does not fit {what}: {problem}; it was "
                                    f"written for another architecture, space, width or image size.")
  for name, variable in pairs:
    variable.assign(arrays[name])


def save(directory: str, number: int, arrays: dict, state: dict) -> str:
  """Saves checkpoint `number` with `arrays` ({name: numpy array}) and `state`; returns its path."""
  final = path_of(directory, number)
  staging = final + ".tmp" if files.is_local(final) else final
  files.remove(staging)
  files.make_dir(staging, "Checkpoint directory")
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  files.write_bytes(os.path.join(staging, "variables.npz"), buffer.getvalue())
  files.write_json(os.path.join(staging, _STATE), state)  # last: it marks the checkpoint complete
  if staging != final:
    os.replace(staging, final)
  for old in _checkpoints(directory)[:-_KEEP]:
    files.remove(old)
  return final


def path_of(directory: str, number: int) -> str:
  """The path of checkpoint `number` in `directory`."""
  return os.path.join(directory, f"{_PREFIX}{number:08d}")


def is_complete(path: str) -> bool:
  """Whether the checkpoint at `path` is all there (its state, written last, is)."""
  return files.exists(os.path.join(path, _STATE))


def latest(directory: str):
  """Returns (arrays, state) of the newest complete checkpoint, or None."""
  found = _checkpoints(directory)
  return load(found[-1]) if found else None


def load(path: str):
  """Returns (arrays, state) of the checkpoint at `path`: ({name: array}, dict).

  Raises:
    CheckpointMismatchError: for a checkpoint of an older pcnas_tf, whose arrays had no names.
  """
  with np.load(io.BytesIO(files.read_bytes(os.path.join(path, "variables.npz")))) as npz:
    arrays = {name: npz[name] for name in npz.files}
  if "arr_0" in arrays:
    raise CheckpointMismatchError(
        f"Checkpoint {path!r} was written by an older pcnas_tf, which stored arrays by position; start "
        f"afresh in another work directory (or with --overwrite).")
  return arrays, files.read_json(os.path.join(path, _STATE), "checkpoint state")


def _checkpoints(directory: str):
  if not files.isdir(directory):
    return []
  names = sorted(n for n in files.listdir(directory) if n.startswith(_PREFIX) and not n.endswith(".tmp"))
  paths = [os.path.join(directory, n) for n in names]
  # Written in place (no rename): complete once its state is there.
  return paths if files.is_local(directory) else [p for p in paths if is_complete(p)]


def has_checkpoints(directory: str) -> bool:
  """Whether `directory` holds a complete checkpoint (trained state a run could resume from)."""
  return bool(_checkpoints(directory))


