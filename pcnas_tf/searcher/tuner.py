"""`PCNASTuner`: the PC-NAS search from Python, as a keras-tuner Tuner paired with `PCNASOracle`.

  tuner = pcnas_tf.PCNASTuner(space="macro", width=0.25, constraint="flops", budget="0.5",
                              pool_size=2, num_samples=8, warmup_epochs=2, interval_epochs=1,
                              batch_size=64, directory="runs", project_name="fashion")
  tuner.search(x_train, y_train, validation_split=0.1)
  tuner.results_summary()
  model = tuner.get_best_models(1)[0]      # weights inherited from the supergraph, compiled
  model.fit(tuner.preprocess(x_train), y_train, epochs=1)

`search` runs `loop.run_search`, the code path of `search_main`, on the tuner's Oracle, in
`directory/project_name` (the search's work directory: checkpoints, search_result.json, pictures). In-
memory images (NumPy arrays or a tf.data.Dataset) are checked, then written once to `data/` there as
the dataset `arrays` (`pcnas_tf.data.arrays`), so `search_main --dataset=arrays --data_dir=...` repeats
the search; a search interrupted (Ctrl-C, a crash) resumes from its last checkpoint when `search` is
called again in the same directory. Settings are the flags of `search_main`, as keywords of the same
names; a user's mistake is one `UserError` sentence, raised before anything is trained.
"""

import contextlib
import dataclasses
import os
import re

import keras
import keras_tuner
import numpy as np
import tensorflow as tf

from pcnas_tf import errors
from pcnas_tf import files
from pcnas_tf.data import arrays as arrays_lib
from pcnas_tf.data import batches as batches_lib
from pcnas_tf.data import data_config
from pcnas_tf.data import sources as data_sources
from pcnas_tf.nn import model as model_lib
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.searcher import oracle as oracle_lib
from pcnas_tf.searcher import search_config
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import checkpoint
from pcnas_tf.training import from_search
from pcnas_tf.training import optimizer_config
from pcnas_tf.training import workdir

DATA_DIR = "data"
# The settings a tuner takes as keywords besides the named ones: the search's (as search_main's flags)
# and its optimizer's.
_OWN = ("space", "width", "data", "optimizer")
SETTINGS = tuple(f.name for f in dataclasses.fields(search_config.SearchConfig) if f.name not in _OWN)
OPTIMIZER_SETTINGS = tuple(f.name for f in dataclasses.fields(optimizer_config.OptimizerConfig))
_TYPES = {**{f.name: f.type for f in dataclasses.fields(search_config.SearchConfig)},
          **{f.name: f.type for f in dataclasses.fields(optimizer_config.OptimizerConfig)}}
# search_main's flags that a tuner names otherwise; the others are its keywords of the same names.
_KEYWORDS = {"validation": "validation_split", "work_dir": "directory", "overwrite": "overwrite=True"}
_SEARCH_KEYWORDS = ("validation_data", "validation_split", "epochs", "num_classes", "resolution",
                    "channels", "data_dir", "verbose")


class PCNASHyperModel(keras_tuner.HyperModel):
  """The stand-alone network of the architecture a `HyperParameters` holds (`mixop_00`, ...), compiled
  for fine-tuning: Nesterov SGD, sparse cross-entropy on logits, accuracy.

  Its input shape and classes are the search's data's, known once the tuner has searched.
  """

  def __init__(self, space: space_lib.SearchSpace, momentum: float, learning_rate: float = 0.01):
    super().__init__(name="pcnas")
    self.space, self.momentum, self.learning_rate = space, momentum, learning_rate
    self.input_shape, self.num_classes = None, None

  def arch(self, hp: keras_tuner.HyperParameters) -> space_lib.Architecture:
    return self.space.arch_from_indices([hp.get(oracle_lib.mixop_name(index))
                                         for index in range(self.space.num_layers)])

  def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
    if self.input_shape is None:
      raise errors.UserError("The networks' input shape is known once the tuner has searched; call "
                             "search() first (or create the tuner on a finished search's directory).")
    model = model_lib.build_model(self.arch(hp), self.space, self.input_shape, self.num_classes)
    model.compile(optimizer=keras.optimizers.SGD(self.learning_rate, self.momentum, nesterov=True),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class PCNASTuner(keras_tuner.Tuner):
  """PC-NAS under a hard constraint, keras-tuner's way: `search`, `results_summary`, the best models.

  Args:
    space: `small`, `large`, `macro`, a `SearchSpace` (e.g. built from `LayerSpec`s), its JSON (a dict,
      JSON text or a .json file).
    width: the width multiplier of a built-in space (default 1.0); a user's space has its channels.
    constraint, budget: `latency`, `flops` or `params`, and a fraction of the space's [min, max]
      cost ("0.5") or an absolute value ("12ms", 3e6).
    pool_size, num_samples, warmup_epochs, interval_epochs: the paper's P, S, Tw and Ti.
    directory, project_name: the search's directory is `directory/project_name` (keras-tuner's names).
    overwrite: remove that directory's search first; otherwise the tuner reloads it and `search`
      resumes it.
    seed: seeds the data split and order, the initial weights, paths and completions.
    **settings: any other setting of `search_main`, by its flag's name (`batch_size`,
      `steps_per_epoch`, `eval_batch_size`, `eval_batches`, `sampling`, `latency_backend`, `strategy`,
      `learning_rate`, ...; see `SETTINGS`, `OPTIMIZER_SETTINGS`).

  Attributes:
    result: the search's result (what search_result.json holds), None before a search finished.
    search_picture, architecture_picture: the pool's potentials and costs per interval, and the chosen
      architecture (PIL images; a notebook shows them).
    config: the `SearchConfig` of the last search (its data too); space: the `SearchSpace`.
  """

  def __init__(self, space="macro", width=None, constraint="latency", budget="0.5", pool_size=5,
               num_samples=900, warmup_epochs=100, interval_epochs=5, directory=None,
               project_name=None, overwrite=False, seed=0, **settings):
    with keyword_errors():
      self.config = _settings_config(space, width, dict(
          constraint=constraint, budget=budget, pool_size=pool_size, num_samples=num_samples,
          warmup_epochs=warmup_epochs, interval_epochs=interval_epochs, seed=seed, **settings))
    self.space = space_lib.get_space(self.config.space, self.config.width)
    self.result = None
    super().__init__(oracle=search_lib.make_oracle(self.config, self.space),
                     hypermodel=PCNASHyperModel(self.space, self.config.optimizer.momentum),
                     directory=directory, project_name=project_name, overwrite=overwrite)
    if not overwrite:
      self.reload()

  def _populate_initial_space(self):
    """The Oracle declares the space itself (one `Choice` per mixop): nothing to build here."""

  # The search ---------------------------------------------------------------------------------------

  def search(self, x, y=None, validation_data=None, validation_split=None, epochs=None, **options):
    """Runs (or resumes) the search on `x` and returns nothing; the results are on the tuner.

    Args:
      x: images as a NumPy array ([N, H, W] or [N, H, W, C], C in 1, 3, 4; pixels 0..255 or floats in
        [0, 1]), a `tf.data.Dataset` of (image, label) pairs (batched or not), or a dataset name
        (`fashion_mnist`, `image_folder`, a prepared tfds dataset, read from `data_dir`).
      y: integer labels of the images in an array `x`.
      validation_data: (images, labels) or a `tf.data.Dataset` that the potentials are scored on;
        without it, `validation_split` of the training images are carved out with the seed.
      validation_split: a fraction in (0, 1) or a count of images (default 0.1, or 5000 for a named
        dataset, as search_main).
      epochs: the supergraph's training epochs in all (Tw + L x Ti): the intervals keep Ti, the warm-up
        takes the rest. None: as the tuner was made.
      **options: `num_classes` (default: one more than the largest label), `resolution` (the side the
        images are resized to; default: their own), `channels` (1 or 3; default: 1 for grey images, 3
        otherwise), `data_dir` (for a dataset name), `verbose` (0: no progress bars).
    """
    unknown = sorted(set(options) - set(_SEARCH_KEYWORDS))
    if unknown:
      raise errors.UserError(f"search() takes no {', '.join(unknown)}; allowed: x, y, "
                             f"{', '.join(_SEARCH_KEYWORDS)} (search settings go to PCNASTuner(...)).")
    with keyword_errors():
      config, write_data = self._search_config(x, y, validation_data, validation_split, epochs, options)
      self._check_project(config)
      write_data()
      self.config = config
      self.result = search_lib.run_search(config, self.project_dir, progress=options.get("verbose", 1) != 0,
                                          oracle=self.oracle)
    self._adopt(self.result)

  def _search_config(self, x, y, validation_data, validation_split, epochs, options):
    """(the search's config, what writes its in-memory data): every check, nothing written yet."""
    config = dataclasses.replace(self.config, **_epochs(self.config, self.space, epochs))
    validation = _validation(validation_data, validation_split, isinstance(x, str))
    data = dict(resolution=options.get("resolution"), validation=validation, seed=config.seed,
                deterministic=True)
    if isinstance(x, str):
      if y is not None or validation_data is not None:
        raise errors.UserError(f"Dataset {x!r} is read with its own labels; pass no y or validation_data "
                               f"with a dataset name.")
      channels = options.get("channels") or 3
      return dataclasses.replace(config, data=data_config.DataConfig(
          dataset=x, data_dir=options.get("data_dir") or data_config.DEFAULT_DATA_DIR,
          channels=channels, **data)), lambda: None
    splits = _in_memory(x, y, validation_data, options.get("num_classes"), options.get("resolution"))
    num_classes = arrays_lib.classes_of(splits, options.get("num_classes"))
    for name, split in splits.items():
      arrays_lib.checked_labels(split.labels, len(split.labels), num_classes,
                                "y" if name == "train" else "validation y")
    channels = options.get("channels") or (1 if splits["train"].images.shape[-1] == 1 else 3)
    memory = data_config.DataConfig(dataset=data_config.ARRAYS, channels=channels, **data)
    # Every check the data allows, on the arrays in memory, before anything is written.
    search_config.check_splits(config, data_sources.load_arrays(splits, num_classes, memory,
                                                                self.space.total_stride))
    root = os.path.join(self.project_dir, DATA_DIR)
    directory = arrays_lib.directory_of(root, splits, num_classes)
    return (dataclasses.replace(config, data=dataclasses.replace(memory, data_dir=directory)),
            lambda: arrays_lib.write(root, splits, num_classes))

  def _check_project(self, config):
    """Refuses a project holding a search of other settings, in the tuner's words (search_main's
    check names its flags)."""
    if not search_lib.has_trained_state(self.project_dir) or not files.exists(
        os.path.join(self.project_dir, workdir.CONFIG_FILE)):
      return
    differences = workdir.saved_config_differences(self.project_dir, config.to_json(), "search config")
    if any(d.startswith("data.data_dir") for d in differences) and config.data.dataset == "arrays":
      differences = ["the images or labels differ"] + [d for d in differences
                                                       if not d.startswith("data.data_dir")]
    if differences:
      raise errors.UserError(f"Project {self.project_dir!r} holds a search with other settings "
                             f"({'; '.join(differences[:3])}); pass overwrite=True to start afresh, or "
                             f"another project_name.")

  # Results ------------------------------------------------------------------------------------------

  def reload(self):
    """Takes the state of the search in the project directory, if it searched this tuner's space with
    its pool size: the Oracle's pool and trials from the newest checkpoint, the result if the search
    finished. (`search` refuses a project of other settings, naming them.)"""
    found = checkpoint.latest(os.path.join(self.project_dir, "checkpoints"))
    if found is None:
      return
    state = found[1]
    saved = search_config.SearchConfig.from_json(state["config"])
    if (space_lib.get_space(saved.space, saved.width), saved.pool_size) != (self.space,
                                                                            self.config.pool_size):
      return
    self.oracle.restore(state["oracle"], state["trials"])
    if files.exists(self.result_path):
      self._adopt(files.read_json(self.result_path, "search result"))

  def save(self):
    """The search saves itself (checkpoints and results in the project directory)."""

  def _adopt(self, result):
    self.result = result
    self.hypermodel.input_shape = tuple(result["input_shape"])
    self.hypermodel.num_classes = result["num_classes"]

  @property
  def result_path(self) -> str:
    """The search's search_result.json (what `result` holds), e.g. for `export.spec.resolve_spec`."""
    return os.path.join(self.project_dir, search_lib.RESULT_FILE)

  def _finished(self) -> dict:
    if self.result is None:
      raise errors.UserError(f"No finished search in {self.project_dir!r}; call search() first.")
    return self.result

  def results_summary(self, num_trials=10):
    """Prints the final pool, best first: architecture, potential, predicted cost, params, FLOPs."""
    result = self._finished()
    constraint = result["constraint"]
    print("Results summary")
    print(f"Results in {self.project_dir}")
    print(f"Showing {min(num_trials, len(result['final_pool']))} best of the final pool of "
          f"{len(result['final_pool'])}")
    print(f"{self.oracle.objective}, {constraint['kind']} budget {constraint['budget']:.6g} "
          f"{constraint['unit']}")
    for rank, member in enumerate(result["final_pool"][:num_trials]):
      costs = [f"{member['params']:,} params", f"{member['flops']:,} FLOPs"]
      if constraint["kind"] == "latency":
        costs.insert(0, f"{member[constraint['prediction_key']]:.4g} {constraint['unit']} predicted")
      print(f"\n#{rank} {member['arch_string']}: {', '.join(member['arch'])}")
      print(f"potential {member['potential']:.4f}; {'; '.join(costs)}")

  def get_best_hyperparameters(self, num_trials=1):
    """`HyperParameters` of the final pool's best `num_trials` architectures (`mixop_00`, ... and
    `arch`, the compact string); `tuner.hypermodel.build(hp)` builds one untrained."""
    best = []
    for member in self._finished()["final_pool"][:num_trials]:
      hp = self.oracle.get_space()
      for index, choice in enumerate(self.space.indices(member["arch"])):
        hp.values[oracle_lib.mixop_name(index)] = choice
      hp.Fixed("arch", member["arch_string"])
      best.append(hp)
    return best

  def get_best_models(self, num_models=1):
    """The final pool's best `num_models` networks, stand-alone Keras models with their weights
    inherited from the supergraph (its newest checkpoint), compiled and ready for `fit`. They take
    images as `preprocess` returns them."""
    models = []
    for hp in self.get_best_hyperparameters(num_models):
      model = self.hypermodel.build(hp)
      from_search.inherit_from_search(self.project_dir, self.space, self.hypermodel.arch(hp), model)
      models.append(model)
    return models

  def preprocess(self, x, batch_size=256) -> np.ndarray:
    """Images (as `search` takes them) as the searched networks take them: float32 [N, H, W, C] at
    the search's resolution and channels, scaled to [-1, 1], through the search's own evaluation
    pipeline."""
    images = arrays_lib.checked_images(x)
    height, _, channels = self._finished()["input_shape"]
    split = arrays_lib.Split(images, np.zeros(len(images), np.int32))
    config = data_config.DataConfig(dataset=data_config.ARRAYS, resolution=height, channels=channels,
                                    validation="validation", deterministic=True)
    splits = data_sources.load_arrays({"train": split, "validation": split},
                                      self.result["num_classes"], config)
    batches = batches_lib.eval_pipeline(splits, config, batch_size, split="validation")
    return np.concatenate([batch.numpy() for batch, _ in batches])

  @property
  def search_picture(self):
    """Pool potentials and costs per interval (search.png), as a PIL image."""
    return self._picture("search.png")

  @property
  def architecture_picture(self):
    """The chosen architecture (chosen_arch.png), as a PIL image."""
    return self._picture("chosen_arch.png")

  def _picture(self, name):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    self._finished()
    with files.open_file(os.path.join(self.project_dir, name), "rb") as f, Image.open(f) as image:
      return image.copy()


# Settings ---------------------------------------------------------------------------------------------


def _settings_config(space, width, settings: dict) -> search_config.SearchConfig:
  """The `SearchConfig` of a tuner's keywords (its data set later), validated."""
  unknown = sorted(set(settings) - set(SETTINGS) - set(OPTIMIZER_SETTINGS))
  if unknown:
    allowed = ("space", "width") + SETTINGS + OPTIMIZER_SETTINGS + ("directory", "project_name", "overwrite")
    raise errors.UserError(f"PCNASTuner takes no setting {', '.join(map(repr, unknown))}; allowed: "
                           f"{', '.join(allowed)}.")
  if isinstance(settings["budget"], (int, float)) and not isinstance(settings["budget"], bool):
    settings["budget"] = repr(settings["budget"])
  for name, value in settings.items():
    _check_type(name, value)
  errors.check_at_least(settings["seed"], 0, "Seed (seed)")
  optimizer = optimizer_config.OptimizerConfig(**{name: settings.pop(name) for name in OPTIMIZER_SETTINGS
                                                  if name in settings})
  return search_config.SearchConfig(**_space_fields(space, width), optimizer=optimizer,
                                    **settings).validate()


def _check_type(name: str, value) -> None:
  wanted = _TYPES[name]
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  fits = (isinstance(value, bool) if wanted is bool else
          number and isinstance(value, int) if wanted is int else
          number if wanted is float else isinstance(value, wanted))
  if not fits:
    raise errors.UserError(f"{name}={value!r} is not allowed; it must be {_TYPE_NAMES[wanted]}.")


_TYPE_NAMES = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}


def _space_fields(space, width) -> dict:
  """`space` and `width` of the config: a built-in name or a .json path as given, else JSON text."""
  if isinstance(space, dict):
    space = space_lib.SearchSpace.from_json(space)
  if isinstance(space, space_lib.SearchSpace):
    space = space_lib.spec_text(space)
  elif not isinstance(space, str):
    raise errors.UserError(f"space={space!r} is not allowed; give {', '.join(space_lib.SPACES)}, a "
                           f"SearchSpace, or its JSON (a dict, JSON text or a .json file).")
  builtin = space in space_lib.SPACES
  if width is not None and not builtin:
    raise errors.UserError(f"width={width!r} applies to the built-in spaces ({', '.join(space_lib.SPACES)}) "
                           f"only; a user's space holds its channels as they are.")
  if width is not None:
    _check_type("width", width)
  return {"space": space, "width": 1.0 if width is None else float(width)}


def _epochs(config, space, epochs) -> dict:
  """The warm-up that makes `epochs` in all (Tw + L x Ti), or nothing to change for None."""
  if epochs is None:
    return {}
  intervals = space.num_layers * config.interval_epochs
  if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < intervals:
    raise errors.UserError(f"epochs={epochs!r} is not allowed; the {space.num_layers} intervals take "
                           f"{intervals} epochs (interval_epochs={config.interval_epochs}), so give an "
                           f"integer >= {intervals}, or None.")
  return {"warmup_epochs": epochs - intervals}


def _validation(validation_data, validation_split, named_dataset: bool):
  """`DataConfig.validation`: the split "validation" when given, else the carve-out (count or fraction)."""
  if validation_data is not None:
    if validation_split is not None:
      raise errors.UserError("Give validation_data or validation_split, not both.")
    return "validation"
  if validation_split is None:
    return 5000 if named_dataset else 0.1
  if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)):
    raise errors.UserError(f"validation_split={validation_split!r} is not allowed; give a fraction in "
                           f"(0, 1) or a count of images >= 1.")
  return validation_split


def _in_memory(x, y, validation_data, num_classes, resolution) -> dict:
  """{"train": Split, "validation"?: Split} of in-memory images, checked."""
  if num_classes is not None:
    arrays_lib.check_num_classes(num_classes)
  splits = {"train": _split(x, y, resolution, "x")}
  if validation_data is not None:
    if not isinstance(validation_data, tf.data.Dataset):
      if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise errors.UserError("validation_data must be (images, labels) or a tf.data.Dataset of "
                               "(image, label) pairs.")
    pair = (validation_data, None) if isinstance(validation_data, tf.data.Dataset) else validation_data
    splits["validation"] = _split(*pair, resolution, "validation x")
    train, validation = splits["train"].images, splits["validation"].images
    if train.shape[-1] != validation.shape[-1]:
      raise errors.UserError(f"x has {train.shape[-1]} channels and validation x "
                             f"{validation.shape[-1]}; give both the same.")
  return splits


def _split(x, y, resolution, what) -> arrays_lib.Split:
  if isinstance(x, tf.data.Dataset):
    if y is not None:
      raise errors.UserError(f"{what} is a tf.data.Dataset of (image, label) pairs; pass no separate "
                             f"labels.")
    return arrays_lib.from_dataset(x, resolution, what)
  if y is None:
    raise errors.UserError(f"{what} is an array of images; give its labels too "
                           f"({'y' if what == 'x' else 'validation_data=(images, labels)'}).")
  return arrays_lib.checked(x, y, what=what)


@contextlib.contextmanager
def keyword_errors():
  """Re-raises a `UserError` that names search_main's flags (`--batch_size`) naming the tuner's
  keywords instead (`batch_size`)."""
  try:
    yield
  except errors.UserError as error:
    text = re.sub(r"--(\w+)", lambda match: _KEYWORDS.get(match[1], match[1]), str(error))
    if text == str(error):
      raise
    try:
      reworded = type(error)(text)
    except TypeError:
      reworded = errors.UserError(text)
    raise reworded.with_traceback(error.__traceback__) from None
