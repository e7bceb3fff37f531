"""What a trained PC-NAS model is: its `.keras` archive loaded, and its space, architecture and shapes.

`load_model` restores a classifier, `model_arch` reads its architecture off its layers, and
`resolve_spec` checks the model against the `train_result.json` or `search_result.json` next to it (or
against a space given on the command line) and returns the `ModelSpec` every export is made from,
including the latency the search predicted for it.
"""

import dataclasses
import os
import warnings
import zipfile
from typing import Sequence

import keras
import numpy as np

from export import export_errors
from pcnas_tf import files
from pcnas_tf.nn import ops  # pylint: disable=unused-import  (registers the layers for deserialisation)
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import standalone as train_lib

SPEC_FILES = ("train_result.json", "search_result.json")  # Looked up next to the model, in this order.
_LAYER_PREFIX = "layer_"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What a model is: its space, architecture, shapes, and the search's predicted latency (if known)."""
  space: space_lib.SearchSpace
  arch: space_lib.Architecture
  input_shape: tuple[int, int, int]
  num_classes: int
  predicted_latency_ms: float | None = None


def load_model(path: str) -> keras.Model:
  """Loads a PC-NAS classifier written by `pcnas_tf.model.build_model(...).save(path)`.

  Raises:
    ExportError: if the file is missing, a directory, unreadable, not a `.keras` archive, damaged
      (weights truncated), or not a PC-NAS classifier.
  """
  model = load_keras_archive(path)
  if not _is_pcnas(model):
    raise export_errors.ExportError(
        f"Model file {path!r} is not a PC-NAS model: it needs layers 'stem', "
        f"'layer_XX_<op>' and 'head' (as built by pcnas_tf.model.build_model).")
  return model


def load_keras_archive(path: str) -> keras.Model:
  """Loads a `.keras` model of PC-NAS layers (a classifier, or a backbone written by `writers`).

  `keras.models.load_model` cannot restore these: the operator layers have no `build()`, so Keras 3
  marks their sub-layers built without variables and then fails to load the weights. Rebuilding from the
  config, running one batch to create every variable, then loading the weights gives the same model.
  """
  if files.isdir(path):
    inside = os.path.join(path, train_lib.MODEL_FILE)
    example = (f", such as {inside!r}" if files.isfile(inside)
               else f" (the {train_lib.MODEL_FILE} a training writes)")
    raise export_errors.ExportError(f"Model file {path!r} is a directory; expected a .keras file{example}.")
  if not files.isfile(path):
    raise export_errors.ExportError(f"Model file {path!r} does not exist.")
  with files.local_copy(path) as local:  # zipfile and h5py read local files
    return _load_local_archive(local, path)


def _load_local_archive(local: str, path: str) -> keras.Model:
  """`load_keras_archive` of the local file `local`; messages name `path`, where it came from."""
  with warnings.catch_warnings():
    # Keras warns of the sub-layers it leaves unbuilt (built below), and of optimizer slots it skips.
    warnings.simplefilter("ignore", UserWarning)
    model = _model_from_archive(local, path)
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
      raise export_errors.ExportError(
          f"Model file {path!r} is not a PC-NAS model: it needs one image input.")
    model(np.zeros((1,) + tuple(model.input_shape[1:]), np.float32))
    try:
      model.load_weights(local)
    except (OSError, KeyError, ValueError) as error:
      # h5py's OSError for a truncated or garbled model.weights.h5, KeyError for a missing one, ValueError
      # for weights that do not fit the config: the archive was cut short or mixed up.
      raise export_errors.ExportError(
          f"Model file {path!r} is damaged or incomplete (its weights cannot be read); export or train "
          f"it again.") from error
  return model


def _model_from_archive(local: str, path: str):
  try:
    with zipfile.ZipFile(local) as archive:
      config = archive.read("config.json").decode()
    return keras.models.model_from_json(config)
  except PermissionError as error:
    raise export_errors.ExportError(
        f"Model file {path!r} cannot be read: permission denied.") from error
  except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as error:
    raise export_errors.ExportError(
        f"Model file {path!r} is not a Keras .keras archive of a PC-NAS model "
        f"({type(error).__name__}).") from error


def _is_pcnas(model: keras.Model) -> bool:
  names = {layer.name for layer in model.layers}
  return {"stem", "head"} <= names and bool(mixop_layers(model))


def mixop_layers(model: keras.Model) -> list[keras.layers.Layer]:
  """The model's searchable layers, `layer_XX_<op>`, in order."""
  return sorted((layer for layer in model.layers
                 if layer.name.startswith(_LAYER_PREFIX) and isinstance(layer, ops.Operator)),
                key=lambda layer: layer.name)


def model_arch(model: keras.Model) -> space_lib.Architecture:
  """The architecture a model was built for, read from its layers."""
  return tuple(layer.op_name for layer in mixop_layers(model))


def find_spec_file(model_path: str) -> str | None:
  """The `train_result.json` or `search_result.json` next to the model, or None."""
  folder = os.path.dirname(files.absolute(model_path))
  for name in SPEC_FILES:
    if files.isfile(os.path.join(folder, name)):
      return os.path.join(folder, name)
  return None


def read_spec_file(path: str) -> dict:
  """Reads a training or search result as a dict; raises ExportError if unreadable."""
  content = files.read_json(path, "result file", export_errors.ExportError)
  if not isinstance(content, dict):
    raise export_errors.ExportError(
        f"Result file {path!r} holds a {type(content).__name__}, not a JSON object.")
  return content


def resolve_spec(model: keras.Model, spec_file: str | None = None, space=None,
                 arch: str | Sequence[str] | None = None) -> ModelSpec:
  """Works out what `model` is, and checks that every source agrees with its layers.

  Args:
    model: from `load_model`.
    spec_file: a `train_result.json` ({"space", "arch", "input_shape", "num_classes",
      "predicted_latency_ms"?}) or `search_result.json` ({"space"?, "final_pool": [entry, ...]}, an
      entry an arch or {"arch", "predicted_latency_ms"?}); None for none.
    space: a `SearchSpace` (overrides the file's); needed when no file gives one.
    arch: the architecture the user expects (compact string or op names); None to take the model's.

  Raises:
    ExportError, SpaceError: if no space is known, the model's architecture is not in the space or not
      in the search's final pool, its channels or strides differ from the space, or `arch` differs.
  """
  content = read_spec_file(spec_file) if spec_file else {}
  space = space or _space_from(content, spec_file)
  found = model_arch(model)
  if len(found) != space.num_layers:
    raise export_errors.ExportError(
        f"Model {model.name!r} has {len(found)} searchable layers; space {space.name!r} "
        f"has {space.num_layers}: the model was not built in this space.")
  found = space.validate_arch(found)
  _check_layers(model, space)
  expected = [("--arch", arch), (spec_file, content.get("arch"))]
  for source, text in expected:
    if text is not None and _as_arch(space, text) != found:
      raise export_errors.ExportError(
          f"Architecture {space.arch_to_string(_as_arch(space, text))} from {source} "
          f"does not match the model's layers, {space.arch_to_string(found)}.")
  _check_shapes(model, content, spec_file)
  latency = content.get("predicted_latency_ms")
  if "final_pool" in content or spec_file and os.path.basename(spec_file) == "search_result.json":
    latency = _pool_latency(content, space, found, spec_file)
  return ModelSpec(space, found, tuple(model.input_shape[1:]), model.get_layer("head").num_classes,
                   None if latency is None else float(latency))


def _space_from(content: dict, spec_file: str | None) -> space_lib.SearchSpace:
  if "space" not in content:
    raise export_errors.ExportError(
        f"No search space is known for this model: pass --space and --width, or put a "
        f"train_result.json with a 'space' next to it ({spec_file or 'none found'}).")
  return space_lib.SearchSpace.from_json(content["space"])


def _as_arch(space, value) -> space_lib.Architecture:
  return space.parse_arch(value) if isinstance(value, str) else space.validate_arch(value)


def _check_layers(model: keras.Model, space) -> None:
  """Channels and strides of each layer must be the space's: else the width or space is wrong."""
  for index, (layer, spec) in enumerate(zip(mixop_layers(model), space.layers)):
    if (layer.out_channels, layer.stride) != (spec.channels, spec.stride):
      raise export_errors.ExportError(
          f"Layer {layer.name!r} has {layer.out_channels} channels and stride {layer.stride}; space "
          f"{space.name!r} (width {space.width}) has {spec.channels} and {spec.stride} at layer "
          f"{index}: the model does not match this space or width.")


def _check_shapes(model: keras.Model, content: dict, spec_file) -> None:
  """A training result's input shape and classes must be the model's."""
  found = {"input_shape": list(model.input_shape[1:]),
           "num_classes": model.get_layer("head").num_classes}
  for key, value in found.items():
    if key in content and list(np.atleast_1d(content[key])) != list(np.atleast_1d(value)):
      raise export_errors.ExportError(
          f"{spec_file!r} gives {key} {content[key]}; the model has {value}: the "
          f"checkpoint does not match this result file.")


def _pool_latency(content: dict, space, arch, spec_file) -> float | None:
  """The predicted latency of `arch` in the search's final pool; raises if it is not there."""
  pool = content.get("final_pool")
  if not isinstance(pool, list) or not pool:
    raise export_errors.ExportError(
        f"Search result {spec_file!r} has no final pool ('final_pool': a non-empty list "
        f"of architectures); export a finished search.")
  for entry in pool:
    member = entry.get("arch") if isinstance(entry, dict) else entry
    if _as_arch(space, member) == arch:
      return entry.get("predicted_latency_ms") if isinstance(entry, dict) else None
  raise export_errors.ExportError(
      f"The model's architecture {space.arch_to_string(arch)} is not in the final pool "
      f"of {spec_file!r}.")
