"""What a training takes from a search: the architecture (the chosen network or a pool member of a
search_result.json, or an architecture file), the search's predictions for it, and its weights from
the supergraph's newest checkpoint (`--init_from_supergraph`)."""

import os

import keras

from pcnas_tf import errors
from pcnas_tf import files
from pcnas_tf.nn import model as model_lib
from pcnas_tf.nn import supergraph as supergraph_lib
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import checkpoint


def read_search_result(path: str) -> dict:
  """Reads a `search_result.json`; raises UserError if it is unreadable or has no final pool."""
  content = files.read_json(path, "search result")
  pool = content.get("final_pool")
  if not isinstance(pool, list) or not pool or "space" not in content:
    raise errors.UserError(f"Search result {path!r} has no final pool ('final_pool': a non-empty list, "
                           f"and 'space'); train from a finished search's search_result.json.")
  return content


def pool_member(result: dict, path: str, pool_rank: int | None = None) -> dict:
  """The search's chosen architecture (pool_rank None) or its final pool's member at `pool_rank`."""
  pool = result["final_pool"]
  if pool_rank is None:
    return result.get("chosen") or pool[0]
  if not 0 <= pool_rank < len(pool):
    raise errors.UserError(f"Pool rank {pool_rank} is out of range; {path!r} has a final pool of "
                           f"{len(pool)}: allowed 0..{len(pool) - 1}.")
  return pool[pool_rank]


def search_predictions(member: dict) -> dict:
  """The search's predicted cost figures of a pool member (`predicted_latency_ms`, ...)."""
  return {key: value for key, value in member.items() if key.startswith("predicted_")}


def read_arch_file(path: str, space=None):
  """Reads an architecture file: a JSON list of op names or string, or {"arch", "space"?} (e.g. a
  `train_result.json`); returns (space, arch). The file's space wins over `space`."""
  content = files.read_json(path, "architecture file")
  arch = content.get("arch") if isinstance(content, dict) else content
  if isinstance(content, dict) and "space" in content:
    space = space_lib.SearchSpace.from_json(content["space"])
  if space is None or not isinstance(arch, (str, list)):
    raise errors.UserError(f"Architecture file {path!r} needs an 'arch' (op names or compact string) "
                           f"and, without --space, a 'space'.")
  return space, parse_arch(space, arch)


def parse_arch(space, arch):
  """An architecture from a compact string, comma-separated op names or a list of op names."""
  return space.parse_arch(arch) if isinstance(arch, str) else space.validate_arch(arch)


def inherit_from_search(search_dir: str, space, arch, model: keras.Model) -> None:
  """Copies the path of `arch` from the newest supergraph checkpoint of a search into `model`.

  Raises:
    UserError: if `search_dir` has no checkpoint; CheckpointMismatchError if the checkpoint's
      supergraph is not of `space` (another space or width).
  """
  directory = os.path.join(search_dir, "checkpoints")
  check_search_checkpoint(search_dir)
  found = checkpoint.latest(directory)
  supergraph = supergraph_lib.Supergraph(space, model.input_shape[1:], model.get_layer("head").num_classes)
  checkpoint.assign(checkpoint.named(supergraph.variables, checkpoint.SUPERGRAPH), found[0], directory,
                    "the supergraph of this architecture's space")
  model_lib.inherit_weights(supergraph, arch, model)


def check_search_checkpoint(search_dir: str) -> None:
  """Raises UserError unless `search_dir` holds a search checkpoint to inherit weights from."""
  directory = os.path.join(search_dir, "checkpoints")
  if not checkpoint.has_checkpoints(directory):
    raise errors.UserError(f"--init_from_supergraph={search_dir} has no search checkpoint in "
                           f"{directory!r}; give the work directory of a search.")
