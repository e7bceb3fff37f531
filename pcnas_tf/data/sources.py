"""Where images come from: offline sources, and the seeded validation carve-out.

Sources (`DataConfig.dataset`):
  * `fashion_mnist` (default, offline): Debian's `dataset-fashion-mnist` IDX files, prepared once into
    `data_dir` as the tfds dataset `fashion_mnist_local` (see `fashion_mnist.py`).
  * `image_folder`: a user's images in `data_dir/<split>/<label>/*.{jpg,jpeg,png}` via `tfds.ImageFolder`;
    `train` is required, `test` (or `val`, `validation`) is optional.
  * `arrays`: in-memory images (NumPy arrays, a tf.data.Dataset) that `arrays.write` wrote to `data_dir`;
    `load_arrays` reads them from memory the same way, without writing them.
  * any other name: a tfds dataset already prepared under `data_dir` (`cifar10`, `imagenet2012`, ...),
    read with downloads off.

The search never sees the test split: `validation` is carved out of the training split, by count or
fraction, with a seeded permutation, so train and validation are disjoint and the same for the same seed.
A `validation` that names a split (e.g. "validation") takes that split whole instead.

  config = data_config.DataConfig(dataset="fashion_mnist", resolution=32, validation=5000, seed=0)
  splits = data_sources.load(config, min_resolution=space.total_stride)
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from pcnas_tf import files as files_lib
from pcnas_tf.data import arrays as arrays_lib
from pcnas_tf.data import data_config

_SMALL_IMAGE_SIDE = 64  # Up to this native side, pad-and-crop; above, random resized crop.


# Sources --------------------------------------------------------------------------------------------


def _decode_encoded(encoded, channels: int):
  return tf.io.decode_image(encoded, channels=channels, expand_animations=False)


@dataclasses.dataclass(frozen=True)
class _Source:
  """The examples of each split, read in a fixed order, with what `load` needs to know of them."""
  splits: dict  # split name -> dataset of (image, int label), the image as `decode` takes it
  counts: dict  # split name -> examples
  num_classes: int
  native_size: tuple[int, int] | None
  skipped: int = 0
  decode: object = _decode_encoded  # (image, channels) -> uint8 image of `channels` channels


def load(config: data_config.DataConfig, min_resolution: int = 1) -> data_config.Splits:
  """Opens the configured source and carves the validation set out of its training split.

  Args:
    config: the `data_config.DataConfig`.
    min_resolution: the smallest input side the network allows (its total stride).

  Raises:
    data_config.DataError: for a missing or unreadable directory, an unknown, malformed or unprepared
      dataset, a malformed image folder, a corrupt or unreadable image (unless skipped), labels out of
      range, a bad carve-out or a too small resolution.
  """
  if config.dataset == data_config.FASHION_MNIST:
    source = _fashion_mnist_source(config)
  elif config.dataset == data_config.IMAGE_FOLDER:
    source = _image_folder_source(config)
  elif config.dataset == data_config.ARRAYS:
    source = _arrays_source(*arrays_lib.read(config.root))
  else:
    source = _tfds_source(config)
  return _splits(source, config, min_resolution)


def load_arrays(splits: dict, num_classes: int, config: data_config.DataConfig,
                min_resolution: int = 1) -> data_config.Splits:
  """What `load` returns for these arrays (split name -> `arrays.Split`) once written; reads memory."""
  return _splits(_arrays_source(splits, num_classes), config, min_resolution)


def _splits(source: _Source, config: data_config.DataConfig, min_resolution: int) -> data_config.Splits:
  if "train" not in source.splits:
    raise data_config.DataError(f"Dataset {config.dataset!r} in {config.root} has no 'train' split; "
                    f"found: {', '.join(source.splits) or 'none'}.")
  resolution = _resolution(config, source.native_size, min_resolution)
  (train, num_train), (validation, num_validation) = _train_and_validation(source, config)
  test_name = next((name for name in data_config.TEST_SPLITS
                    if name in source.splits and name != config.validation), None)
  small = source.native_size is not None and max(source.native_size) <= _SMALL_IMAGE_SIDE
  stored_size = (resolution, resolution) if small else source.native_size
  resize = small and source.native_size != stored_size

  def prepared(dataset, count):
    return _decoded(dataset, source.decode, config, count, stored_size, resolution if resize else None)

  return data_config.Splits(
      train=prepared(train, num_train), validation=prepared(validation, num_validation),
      test=prepared(source.splits[test_name], source.counts[test_name]) if test_name else None,
      num_classes=source.num_classes, image_shape=(resolution, resolution, config.channels),
      num_train=num_train, num_validation=num_validation,
      num_test=source.counts[test_name] if test_name else 0, native_size=source.native_size,
      small_images=small, skipped=source.skipped)


def _train_and_validation(source: _Source, config: data_config.DataConfig):
  """((train dataset, count), (validation dataset, count)): a seeded carve-out, or a named split."""
  train_all, num_all = source.splits["train"], source.counts["train"]
  if isinstance(config.validation, str):
    if config.validation not in source.splits:
      raise data_config.DataError(
          f"Dataset {config.dataset!r} has no split {config.validation!r} to validate on; found: "
          f"{', '.join(source.splits)}; name one of them, or give a count or a fraction to carve out.")
    return (train_all, num_all), (source.splits[config.validation], source.counts[config.validation])
  is_validation = _validation_mask(config, num_all)
  num_validation = int(is_validation.sum())
  return ((_carve(train_all, is_validation, False), num_all - num_validation),
          (_carve(train_all, is_validation, True), num_validation))


def _validation_mask(config: data_config.DataConfig, num_train: int) -> np.ndarray:
  """Which training examples, by position, the seeded carve-out gives to validation."""
  count = (round(config.validation * num_train) if isinstance(config.validation, float)
           else int(config.validation))
  if not 0 < count < num_train:
    raise data_config.DataError(f"Validation carve-out {config.validation} gives {count} images; it must leave at "
                    f"least one of the training split's {num_train} images and take at least one.")
  mask = np.zeros(num_train, bool)
  mask[np.random.default_rng(config.seed).permutation(num_train)[:count]] = True
  return mask


def _resolution(config: data_config.DataConfig, native_size, min_resolution: int) -> int:
  if config.resolution is None and (native_size is None or native_size[0] != native_size[1]):
    shape = "different sizes" if native_size is None else f"{native_size[0]}x{native_size[1]}"
    raise data_config.DataError(f"Dataset {config.dataset!r} has images of {shape}; set a square resolution "
                    f"(e.g. 224).")
  resolution = config.resolution or native_size[0]
  if resolution < min_resolution:
    raise data_config.DataError(f"Resolution {resolution} is smaller than the network's total stride "
                    f"{min_resolution}; use a resolution of at least {min_resolution}.")
  return resolution


def _carve(dataset, is_validation: np.ndarray, validation: bool):
  # The source's order is fixed (no file shuffling, deterministic reads), so an example's position is
  # a stable identity for the seeded permutation. Hence `deterministic=False` is passed to our own maps
  # only, never set as a tf.data option: that would also reorder tfds' parallel reads upstream.
  mask = tf.constant(is_validation)
  dataset = dataset.enumerate().filter(lambda index, example: tf.gather(mask, index) == validation)
  return dataset.map(lambda index, example: example)


def _decoded(dataset, decoder, config: data_config.DataConfig, count: int, stored_size,
             resolution: int | None):
  """Decodes to uint8 with `config.channels` channels (`decoder`), resized to `resolution` unless None.

  The split is cached in memory when its `stored_size` images fit in `config.cache_bytes`, so the
  decoding and resizing are done once, not every epoch.
  """
  channels = config.channels

  def decode(encoded, label):
    image = decoder(encoded, channels)
    if resolution is not None:
      image = tf.saturate_cast(tf.round(resize(image, resolution)), tf.uint8)
    return image, tf.cast(label, tf.int32)

  # Decoding keeps the order, so validation batches are the same with or without `deterministic`.
  dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
  if stored_size is not None and count * stored_size[0] * stored_size[1] * channels <= config.cache_bytes:
    dataset = dataset.cache()
  return dataset.apply(tf.data.experimental.assert_cardinality(count))


def _fashion_mnist_source(config: data_config.DataConfig) -> _Source:
  from pcnas_tf.data import fashion_mnist  # pylint: disable=g-import-not-at-top  (registers the builder)
  builder = fashion_mnist.prepare(config.root, config.idx_dir)
  return _builder_source(builder, config)


def _tfds_source(config: data_config.DataConfig) -> _Source:
  if not files_lib.isdir(config.root):
    raise data_config.DataError(f"Data directory {config.root} does not exist; give --data_dir a directory that "
                    f"holds prepared tfds datasets.")
  allowed = (f"allowed: {data_config.FASHION_MNIST}, {data_config.IMAGE_FOLDER} or the name of a tfds "
             f"dataset (e.g. cifar10)")
  try:
    builder = tfds.builder(config.dataset, data_dir=config.root)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise data_config.DataError(f"Unknown dataset {config.dataset!r}; {allowed}.") from error
  except (ValueError, AssertionError) as error:  # tfds' answers to a malformed name, config or version
    raise data_config.DataError(f"Dataset {config.dataset!r} cannot be opened ({_tfds_reason(error)}); "
                                f"{allowed}.") from error
  if not builder.is_prepared():
    raise data_config.DataError(
        f"Dataset {config.dataset!r} is not prepared under {config.root} (downloads are off); prepare it "
        f"where the network is reachable with `tfds build {config.dataset} --data_dir={config.root}` and "
        f"copy that directory here.")
  return _builder_source(builder, config)


def _tfds_reason(error: Exception) -> str:
  """The gist of tfds' many-line message: its first line, without the builder arguments it repeats."""
  reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return reason.split('": ', 1)[-1].rstrip(".:")


def _builder_source(builder, config: data_config.DataConfig) -> _Source:
  """The encoded (image, label) examples of a prepared tfds builder, decoded later by `load`."""
  image_key, label_key = builder.info.supervised_keys or ("image", "label")
  features = dict(builder.info.features.items())
  if not isinstance(features.get(image_key), tfds.features.Image):
    raise data_config.DataError(f"Dataset {config.dataset!r} has no image input (supervised keys "
                    f"{builder.info.supervised_keys}); only image classification datasets are allowed.")
  if not isinstance(features.get(label_key), tfds.features.ClassLabel):
    raise data_config.DataError(f"Dataset {config.dataset!r} has no class label; only classification is allowed.")
  # Images stay encoded until after the carve-out, so filtering never decodes what it drops.
  read = dict(as_supervised=True, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()})
  splits = {name: builder.as_dataset(split=name, **read) for name in builder.info.splits}
  counts = {name: info.num_examples for name, info in builder.info.splits.items()}
  height, width = features[image_key].shape[:2]
  native_size = (height, width) if height and width else None
  return _Source(splits, counts, features[label_key].num_classes, native_size)


# In-memory arrays -----------------------------------------------------------------------------------


def _arrays_source(splits: dict, num_classes: int) -> _Source:
  datasets = {name: tf.data.Dataset.from_tensor_slices((split.images, split.labels))
              for name, split in splits.items()}
  sizes = {split.images.shape[1:3] for split in splits.values()}
  return _Source(datasets, {name: len(split.labels) for name, split in splits.items()}, num_classes,
                 sizes.pop() if len(sizes) == 1 else None, decode=_convert_channels)


def _convert_channels(image, channels: int):
  """A uint8 image with `channels` channels, as `tf.io.decode_image` converts a PNG: an alpha channel
  dropped, grey repeated to RGB, RGB weighted to grey."""
  if image.shape[-1] == 4:
    image = image[..., :3]
  if image.shape[-1] == channels:
    return image
  if channels == 3:
    return tf.image.grayscale_to_rgb(image)
  grey = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
  return tf.saturate_cast(tf.round(grey), tf.uint8)


# Image folders --------------------------------------------------------------------------------------


def _image_folder_source(config: data_config.DataConfig) -> _Source:
  root = config.root
  if not files_lib.isdir(root):
    raise data_config.DataError(f"Image folder {root} does not exist; expected {root}/<split>/<label>/*.png|jpg.")
  paths = _list_images(root)
  builder = tfds.ImageFolder(root)
  files = {name: builder.as_dataset(split=name, shuffle_files=False,
                                    decoders={"image": tfds.decode.SkipDecoding()})
           for name in builder.info.splits}
  # One decoding pass finds the corrupt files (before training can trip on them) and the image sizes.
  sizes = {name: _decodable_sizes(dataset, config.channels) for name, dataset in files.items()}
  corrupt = sorted(path for name in files for path in paths[name] if path not in sizes[name])
  if corrupt and not config.skip_corrupt:
    raise data_config.DataError(_unusable_image(corrupt[0], len(corrupt)))
  splits = {name: _without(dataset, corrupt) for name, dataset in files.items()}
  counts = {name: len(sizes[name]) for name in files}
  shapes = {shape for split_sizes in sizes.values() for shape in split_sizes.values()}
  native_size = shapes.pop() if len(shapes) == 1 else None
  return _Source(splits, counts, builder.info.features["label"].num_classes, native_size, len(corrupt))


def _unusable_image(path: str, count: int) -> str:
  """Why the image file `path`, one of `count` that did not decode, is unusable: unreadable or corrupt."""
  try:
    with files_lib.open_file(path, "rb") as f:
      f.read(1)
  except PermissionError:
    return (f"Image file {path} cannot be read: permission denied ({count} unusable in all); make it "
            f"readable or remove it, or pass --skip_corrupt to skip such files.")
  except (OSError, tf.errors.OpError) as error:
    return (f"Image file {path} cannot be read: {_reason(error)} ({count} unusable in all); fix or remove "
            f"it, or pass --skip_corrupt to skip such files.")
  return (f"Image file {path} cannot be decoded ({count} unusable in all); fix or remove it, or pass "
          f"--skip_corrupt to skip such files.")


def _reason(error) -> str:
  reason = error.message if isinstance(error, tf.errors.OpError) else error.strerror
  return (reason or type(error).__name__).lower()


def _listdir(directory: str, what: str) -> list[str]:
  """The entries of `directory` (`what` names it: "Class folder"); unreadable is a `DataError`."""
  try:
    return files_lib.listdir(directory)
  except PermissionError as error:
    remedy = "" if what == "Image folder" else " or remove it"
    raise data_config.DataError(f"{what} {directory} cannot be read: permission denied; make it "
                                f"readable{remedy}.") from error
  except (OSError, tf.errors.OpError) as error:
    raise data_config.DataError(f"{what} {directory} cannot be read: {_reason(error)}.") from error


def _list_images(root: str) -> dict[str, list[str]]:
  """The image paths of each split, as `tfds.ImageFolder` finds them, after checking the class folders."""
  paths, classes = {}, set()
  for split in sorted(_listdir(root, "Image folder")):
    split_dir = os.path.join(root, split)
    labels = sorted(label for label in _listdir(split_dir, "Split folder")
                    if files_lib.isdir(os.path.join(split_dir, label))) if files_lib.isdir(split_dir) else []
    for label in labels:
      label_dir = os.path.join(split_dir, label)
      images = [os.path.join(label_dir, name) for name in _listdir(label_dir, "Class folder")
                if name.lower().endswith(data_config.IMAGE_EXTENSIONS)]
      if not images:
        raise data_config.DataError(f"Class folder {label_dir} has no .jpg, .jpeg or .png images; add images or "
                        f"remove the folder.")
      paths.setdefault(split, []).extend(images)
      classes.add(label)
  if len(classes) < 2:
    raise data_config.DataError(f"Image folder {root} has {len(classes)} class folder(s); classification needs at "
                    f"least 2, as {root}/<split>/<label>/ directories.")
  return paths


def _decodable_sizes(files, channels: int) -> dict:
  """Maps each file that decodes to its (height, width); a corrupt file is simply absent."""

  def size(example):
    image = tf.io.decode_image(example["image"], channels=channels, expand_animations=False)
    return example["image/filename"], tf.shape(image)[:2]

  checked = files.map(size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  return {path.decode(): tuple(int(side) for side in shape)
          for path, shape in checked.ignore_errors().as_numpy_iterator()}


def _without(files, corrupt: list[str]):
  """(encoded image, label) pairs of `files`, leaving out the `corrupt` paths."""
  if corrupt:
    # Filtering by name, not position, keeps the remaining order fixed for the carve-out.
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(corrupt, tf.ones([len(corrupt)], tf.int32)), 0)
    files = files.filter(lambda example: table.lookup(example["image/filename"]) == 0)
  return files.map(lambda example: (example["image"], example["label"]))


def resize(images, resolution: int):
  """Antialiased resize to `resolution` x `resolution` (float32)."""
  return tf.image.resize(images, (resolution, resolution), antialias=True)
