"""Input data: offline sources, the seeded validation carve-out, and tf.data pipelines per replica.

Sources (`DataConfig.dataset`):
  * `fashion_mnist` (default, offline): Debian's `dataset-fashion-mnist` IDX files, prepared once into
    `data_dir` as the tfds dataset `fashion_mnist_local` (see `fashion_mnist.py`).
  * `image_folder`: a user's images in `data_dir/<split>/<label>/*.{jpg,jpeg,png}` via `tfds.ImageFolder`;
    `train` is required, `test` (or `val`, `validation`) is optional.
  * any other name: a tfds dataset already prepared under `data_dir` (`cifar10`, `imagenet2012`, ...),
    read with downloads off.

The search never sees the test split: `validation` is carved out of the training split, by count or
fraction, with a seeded permutation, so train and validation are disjoint and the same for the same seed.

Usage:

  config = data.DataConfig(dataset="fashion_mnist", resolution=32, validation=5000, seed=0)
  splits = data.load(config, min_resolution=space.total_stride)
  train = data.train_dataset(splits, config, global_batch_size=128, strategy=strategy)  # infinite
  test = data.eval_dataset(splits, config, 256, strategy, split="test")                 # one pass
  batches = data.ValidationBatches(splits, config, batch_size=256, num_batches=8)
  images, labels = batches.batch(i)  # one fixed validation mini-batch, e.g. per sampled model

Pipelines yield (float32 images in [-1, 1] of `splits.image_shape`, int32 labels); with `mixup_alpha` the
training labels are one-hot float32 mixed by `keras.layers.MixUp`. Small images (native side <= 64) are
trained with pad-and-crop and evaluated at full view; larger ones with Inception's random resized crop
and a 87.5% centre crop. Both augmentations add a random horizontal flip.
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from pcnas_tf import errors

DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST = "fashion_mnist"
IMAGE_FOLDER = "image_folder"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TEST_SPLITS = ("test", "validation", "val")  # The first one present is the split reported at the end.
_SMALL_IMAGE_SIDE = 64  # Up to this native side, pad-and-crop; above, random resized crop.
_EVAL_CROP = 0.875
_SHUFFLE_BUFFER = 10_000


class DataError(errors.UserError):
  """A data set, a data directory or a data option is not usable."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the images come from and how they are split and preprocessed.

  Attributes:
    dataset: `fashion_mnist`, `image_folder`, or the name of a tfds dataset prepared under `data_dir`.
    data_dir: the tfds data directory (prepared datasets; Fashion-MNIST is prepared here), or the root of
      an image folder.
    resolution: side of the square model input; None keeps the native size (square images only).
    channels: 3 (grey images are repeated to RGB) or 1 (colour images are converted to grey).
    validation: images carved out of the training split: a count (int) or a fraction in (0, 1).
    seed: seeds the carve-out, shuffling and augmentation.
    deterministic: keep element order fixed in parallel maps (slower); with it the same seed gives
      the same batches.
    skip_corrupt: skip (and count) image files that do not decode, instead of failing on the first.
    cache_bytes: cache decoded images in memory when a split's estimated size is at most this.
    idx_dir: where Fashion-MNIST's IDX files are read from when it is first prepared.
  """
  dataset: str = FASHION_MNIST
  data_dir: str = DEFAULT_DATA_DIR
  resolution: int | None = None
  channels: int = 3
  validation: int | float = 5000
  seed: int = 0
  deterministic: bool = False
  skip_corrupt: bool = False
  cache_bytes: int = 2 << 30
  idx_dir: str = DEBIAN_FASHION_MNIST

  def __post_init__(self):
    if self.channels not in (1, 3):
      raise DataError(f"Channels {self.channels} is not allowed; allowed: 1 (grey) or 3 (RGB).")
    if self.resolution is not None and self.resolution < 1:
      raise DataError(f"Resolution {self.resolution} must be a positive image side, or None (native).")
    if isinstance(self.validation, float) and not 0 < self.validation < 1:
      raise DataError(f"Validation fraction {self.validation} must be in (0, 1).")
    if self.validation <= 0:
      raise DataError(f"Validation size {self.validation} must be > 0: a count or a fraction in (0, 1).")

  @property
  def root(self) -> str:
    return os.path.expanduser(self.data_dir)


@dataclasses.dataclass(frozen=True)
class Splits:
  """The three splits as unbatched (uint8 image, int32 label) datasets, before augmentation.

  Images have `image_shape`'s channels. Small images (native side <= 64) are already resized to
  `image_shape`; larger ones keep their native size, for random resized crops. The pipelines below crop
  and normalise them. `test` is None when the source has no test split.
  """
  train: tf.data.Dataset
  validation: tf.data.Dataset
  test: tf.data.Dataset | None
  num_classes: int
  image_shape: tuple[int, int, int]
  num_train: int
  num_validation: int
  num_test: int
  native_size: tuple[int, int] | None  # (height, width) when every image has it.
  small_images: bool
  skipped: int = 0  # Corrupt files skipped with `skip_corrupt`.


# Sources --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Source:
  """Encoded examples of each split, read in a fixed order, with what `load` needs to know of them."""
  splits: dict  # split name -> dataset of (encoded image bytes, int label)
  counts: dict  # split name -> examples
  num_classes: int
  native_size: tuple[int, int] | None
  skipped: int = 0


def load(config: DataConfig, min_resolution: int = 1) -> Splits:
  """Opens the configured source and carves the validation set out of its training split.

  Args:
    config: the `DataConfig`.
    min_resolution: the smallest input side the network allows (its total stride).

  Raises:
    DataError: for a missing directory, an unknown or unprepared dataset, a malformed image folder, a
      corrupt image (unless skipped), labels out of range, a bad carve-out or a too small resolution.
  """
  if config.dataset == FASHION_MNIST:
    source = _fashion_mnist_source(config)
  elif config.dataset == IMAGE_FOLDER:
    source = _image_folder_source(config)
  else:
    source = _tfds_source(config)
  if "train" not in source.splits:
    raise DataError(f"Dataset {config.dataset!r} in {config.root} has no 'train' split; "
                    f"found: {', '.join(source.splits) or 'none'}.")
  resolution = _resolution(config, source.native_size, min_resolution)
  num_train = source.counts["train"]
  is_validation = _validation_mask(config, num_train)
  num_validation = int(is_validation.sum())
  test_name = next((name for name in TEST_SPLITS if name in source.splits), None)
  small = source.native_size is not None and max(source.native_size) <= _SMALL_IMAGE_SIDE
  stored_size = (resolution, resolution) if small else source.native_size
  resize = small and source.native_size != stored_size

  def prepared(dataset, count):
    return _decoded(dataset, config, count, stored_size, resolution if resize else None)

  train_all = source.splits["train"]
  return Splits(
      train=prepared(_carve(train_all, is_validation, False), num_train - num_validation),
      validation=prepared(_carve(train_all, is_validation, True), num_validation),
      test=prepared(source.splits[test_name], source.counts[test_name]) if test_name else None,
      num_classes=source.num_classes, image_shape=(resolution, resolution, config.channels),
      num_train=num_train - num_validation, num_validation=num_validation,
      num_test=source.counts[test_name] if test_name else 0, native_size=source.native_size,
      small_images=small, skipped=source.skipped)


def _validation_mask(config: DataConfig, num_train: int) -> np.ndarray:
  """Which training examples, by position, the seeded carve-out gives to validation."""
  count = (round(config.validation * num_train) if isinstance(config.validation, float)
           else int(config.validation))
  if not 0 < count < num_train:
    raise DataError(f"Validation carve-out {config.validation} gives {count} images; it must leave at "
                    f"least one of the training split's {num_train} images and take at least one.")
  mask = np.zeros(num_train, bool)
  mask[np.random.default_rng(config.seed).permutation(num_train)[:count]] = True
  return mask


def _resolution(config: DataConfig, native_size, min_resolution: int) -> int:
  if config.resolution is None and (native_size is None or native_size[0] != native_size[1]):
    shape = "different sizes" if native_size is None else f"{native_size[0]}x{native_size[1]}"
    raise DataError(f"Dataset {config.dataset!r} has images of {shape}; set a square resolution "
                    f"(e.g. 224).")
  resolution = config.resolution or native_size[0]
  if resolution < min_resolution:
    raise DataError(f"Resolution {resolution} is smaller than the network's total stride "
                    f"{min_resolution}; use a resolution of at least {min_resolution}.")
  return resolution


def _carve(dataset, is_validation: np.ndarray, validation: bool):
  # The source's order is fixed (no file shuffling, deterministic reads), so an example's position is
  # a stable identity for the seeded permutation. Hence `deterministic=False` is passed to our own maps
  # only, never set as a tf.data option: that would also reorder tfds' parallel reads upstream.
  mask = tf.constant(is_validation)
  dataset = dataset.enumerate().filter(lambda index, example: tf.gather(mask, index) == validation)
  return dataset.map(lambda index, example: example)


def _decoded(dataset, config: DataConfig, count: int, stored_size, resolution: int | None):
  """Decodes to uint8 with `config.channels` channels, resized to `resolution` unless None.

  The split is cached in memory when its `stored_size` images fit in `config.cache_bytes`, so the
  decoding and resizing are done once, not every epoch.
  """
  channels = config.channels

  def decode(encoded, label):
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    if resolution is not None:
      image = tf.saturate_cast(tf.round(_resize(image, resolution)), tf.uint8)
    return image, tf.cast(label, tf.int32)

  # Decoding keeps the order, so validation batches are the same with or without `deterministic`.
  dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
  if stored_size is not None and count * stored_size[0] * stored_size[1] * channels <= config.cache_bytes:
    dataset = dataset.cache()
  return dataset.apply(tf.data.experimental.assert_cardinality(count))


def _fashion_mnist_source(config: DataConfig) -> _Source:
  from pcnas_tf import fashion_mnist  # pylint: disable=g-import-not-at-top  (registers the builder)
  builder = fashion_mnist.prepare(config.root, config.idx_dir)
  return _builder_source(builder, config)


def _tfds_source(config: DataConfig) -> _Source:
  if not os.path.isdir(config.root):
    raise DataError(f"Data directory {config.root} does not exist; give --data_dir a directory that "
                    f"holds prepared tfds datasets.")
  try:
    builder = tfds.builder(config.dataset, data_dir=config.root)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise DataError(f"Unknown dataset {config.dataset!r}; allowed: {FASHION_MNIST}, {IMAGE_FOLDER} or the "
                    f"name of a tfds dataset (e.g. cifar10).") from error
  if not builder.is_prepared():
    raise DataError(
        f"Dataset {config.dataset!r} is not prepared under {config.root} (downloads are off); prepare it "
        f"where the network is reachable with `tfds build {config.dataset} --data_dir={config.root}` and "
        f"copy that directory here.")
  return _builder_source(builder, config)


def _builder_source(builder, config: DataConfig) -> _Source:
  """The encoded (image, label) examples of a prepared tfds builder, decoded later by `load`."""
  image_key, label_key = builder.info.supervised_keys or ("image", "label")
  features = dict(builder.info.features.items())
  if not isinstance(features.get(image_key), tfds.features.Image):
    raise DataError(f"Dataset {config.dataset!r} has no image input (supervised keys "
                    f"{builder.info.supervised_keys}); only image classification datasets are allowed.")
  if not isinstance(features.get(label_key), tfds.features.ClassLabel):
    raise DataError(f"Dataset {config.dataset!r} has no class label; only classification is allowed.")
  # Images stay encoded until after the carve-out, so filtering never decodes what it drops.
  read = dict(as_supervised=True, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()})
  splits = {name: builder.as_dataset(split=name, **read) for name in builder.info.splits}
  counts = {name: info.num_examples for name, info in builder.info.splits.items()}
  height, width = features[image_key].shape[:2]
  native_size = (height, width) if height and width else None
  return _Source(splits, counts, features[label_key].num_classes, native_size)


# Image folders --------------------------------------------------------------------------------------


def _image_folder_source(config: DataConfig) -> _Source:
  root = config.root
  if not os.path.isdir(root):
    raise DataError(f"Image folder {root} does not exist; expected {root}/<split>/<label>/*.png|jpg.")
  paths = _list_images(root)
  builder = tfds.ImageFolder(root)
  files = {name: builder.as_dataset(split=name, shuffle_files=False,
                                    decoders={"image": tfds.decode.SkipDecoding()})
           for name in builder.info.splits}
  # One decoding pass finds the corrupt files (before training can trip on them) and the image sizes.
  sizes = {name: _decodable_sizes(dataset, config.channels) for name, dataset in files.items()}
  corrupt = sorted(path for name in files for path in paths[name] if path not in sizes[name])
  if corrupt and not config.skip_corrupt:
    raise DataError(f"Image file {corrupt[0]} cannot be decoded ({len(corrupt)} corrupt in all); fix or "
                    f"remove it, or pass skip_corrupt to skip such files.")
  splits = {name: _without(dataset, corrupt) for name, dataset in files.items()}
  counts = {name: len(sizes[name]) for name in files}
  shapes = {shape for split_sizes in sizes.values() for shape in split_sizes.values()}
  native_size = shapes.pop() if len(shapes) == 1 else None
  return _Source(splits, counts, builder.info.features["label"].num_classes, native_size, len(corrupt))


def _list_images(root: str) -> dict[str, list[str]]:
  """The image paths of each split, as `tfds.ImageFolder` finds them, after checking the class folders."""
  paths, classes = {}, set()
  for split in sorted(os.listdir(root)):
    split_dir = os.path.join(root, split)
    labels = sorted(label for label in os.listdir(split_dir)
                    if os.path.isdir(os.path.join(split_dir, label))) if os.path.isdir(split_dir) else []
    for label in labels:
      label_dir = os.path.join(split_dir, label)
      images = [os.path.join(label_dir, name) for name in os.listdir(label_dir)
                if name.lower().endswith(IMAGE_EXTENSIONS)]
      if not images:
        raise DataError(f"Class folder {label_dir} has no .jpg, .jpeg or .png images; add images or "
                        f"remove the folder.")
      paths.setdefault(split, []).extend(images)
      classes.add(label)
  if len(classes) < 2:
    raise DataError(f"Image folder {root} has {len(classes)} class folder(s); classification needs at "
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


# Preprocessing --------------------------------------------------------------------------------------
#
# Small images have one native size, so they are batched first and augmented a batch at a time (one op
# per batch instead of one per image: several times faster). Larger images may differ in size, so they
# are cropped to the resolution one by one before batching.


def _normalise(images):
  return images / 127.5 - 1.0


def _resize(images, resolution: int):
  return tf.image.resize(images, (resolution, resolution), antialias=True)


def _seeded(dataset, seed: int, stage: int):
  """Pairs each element with its own stateless seed, so augmentation does not depend on thread timing."""
  base = tf.constant([seed, stage], tf.int64)
  return dataset.enumerate().map(
      lambda index, example: (*example, tf.random.experimental.stateless_fold_in(base, index)))


def _pad_and_crop(images, seed, resolution: int):
  """Pads a batch by resolution / 8 on each side and crops each image back at a random offset."""
  pad = max(1, resolution // 8)
  images = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
  offsets = tf.random.stateless_uniform([tf.shape(images)[0], 2, 1], seed, 0, 2 * pad + 1, tf.int32)
  rows, columns = tf.unstack(offsets + tf.range(resolution), axis=1)
  images = tf.gather(images, rows, axis=1, batch_dims=1)
  return tf.gather(images, columns, axis=2, batch_dims=1)


def _random_flip(images, seed):
  flip = tf.random.stateless_uniform([tf.shape(images)[0]], seed) < 0.5
  return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def _random_resized_crop(image, seed, resolution: int):
  """Inception's crop of one image: 8-100% of its area at aspect 3/4-4/3, resized to the resolution."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), tf.zeros([1, 0, 4]), seed, area_range=(0.08, 1.0),
      aspect_ratio_range=(3 / 4, 4 / 3), max_attempts=10, use_image_if_no_bounding_boxes=True)
  return _resize(tf.cast(tf.slice(image, begin, size), tf.float32), resolution)


def _centre_crop(image, resolution: int):
  """Scales one image's short side to resolution / 0.875 and keeps the central square."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = tf.math.ceil(resolution / _EVAL_CROP) / tf.reduce_min(shape)
  image = tf.image.resize(image, tf.cast(tf.math.round(shape * scale), tf.int32), antialias=True)
  return tf.image.resize_with_crop_or_pad(image, resolution, resolution)


def _train_batches(dataset, splits: Splits, batch_size: int, seed: int, deterministic: bool):
  resolution = splits.image_shape[0]
  parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  if not splits.small_images:
    dataset = _seeded(dataset, seed, 0).map(
        lambda image, label, key: (_random_resized_crop(image, key, resolution), label), **parallel)

  def augment(images, labels, key):
    crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    images = tf.cast(images, tf.float32)
    if splits.small_images:
      images = _pad_and_crop(images, crop_key, resolution)
    return _finish(_random_flip(images, flip_key), splits), labels

  dataset = dataset.batch(batch_size, drop_remainder=True)
  return _seeded(dataset, seed, 1).map(augment, **parallel)


def _eval_batches(dataset, splits: Splits, batch_size: int, deterministic: bool, drop_remainder=False):
  resolution = splits.image_shape[0]
  parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  if not splits.small_images:
    dataset = dataset.map(lambda image, label: (_centre_crop(image, resolution), label), **parallel)

  def finish(images, labels):
    return _finish(tf.cast(images, tf.float32), splits), labels

  return dataset.batch(batch_size, drop_remainder).map(finish, **parallel)


def _finish(images, splits: Splits):
  return tf.ensure_shape(_normalise(images), (None,) + splits.image_shape)


def mixup(dataset, num_classes: int, alpha: float = 0.2, seed: int = 0):
  """Mixes a batched (images, int labels) dataset with `keras.layers.MixUp`; labels become one-hot.

  The mixing is Keras' (`transform_images`/`transform_labels`), but its random draw is made here from a
  stateless seed per batch: the layer's own seed generator, shared by parallel map calls, gives other
  mixes on every run, which would make training irreproducible and resumption inexact.
  """
  layer = keras.layers.MixUp(alpha=alpha)

  def mix(images, labels, batch_seed):
    size = tf.shape(images)[0]
    gamma = [tf.random.stateless_gamma([size], tf.random.experimental.stateless_fold_in(batch_seed, i),
                                       alpha) for i in (0, 1)]
    transformation = {"mix_weight": gamma[0] / (gamma[0] + gamma[1]),  # Beta(alpha, alpha)
                      "permutation_order": tf.random.experimental.stateless_shuffle(
                          tf.range(size, dtype=tf.int64), batch_seed)}
    return (layer.transform_images(images, transformation),
            layer.transform_labels(tf.one_hot(labels, num_classes), transformation))

  return _seeded(dataset, seed, 2).map(mix, num_parallel_calls=tf.data.AUTOTUNE)


# Pipelines ------------------------------------------------------------------------------------------


def train_pipeline(splits: Splits, config: DataConfig, global_batch_size: int, input_context=None,
                   mixup_alpha: float = 0.0, skip_batches: int = 0):
  """One input pipeline's endless, shuffled, augmented batches for its replicas.

  Each replica's stream depends only on its global replica id (its data shard and seed), not on how
  replicas are grouped into input pipelines: a pipeline serving k replicas interleaves their streams,
  one batch each in turn, which is how `distribute_datasets_from_function` hands batches to the local
  devices. So two workers of one replica each (MultiWorkerMirroredStrategy) and one process with two
  replicas (MirroredStrategy) train on the same examples per replica per step.

  Args:
    splits: from `load`.
    config: the `DataConfig` `splits` was loaded with.
    global_batch_size: images per step over all replicas.
    input_context: a `tf.distribute.InputContext` (None: one pipeline, one replica).
    mixup_alpha: when > 0, mix batches with `keras.layers.MixUp(mixup_alpha)` (one-hot labels).
    skip_batches: steps already trained; each replica's stream starts after them (resumption).
  """
  replicas, num_replicas = replicas_of(input_context)
  batch_size = input_context.get_per_replica_batch_size(global_batch_size) if input_context else (
      global_batch_size)
  streams = [_replica_train_stream(splits, config, batch_size, replica, num_replicas, mixup_alpha)
             .skip(skip_batches) for replica in replicas]
  if len(streams) == 1:
    dataset = streams[0]
  else:
    order = tf.data.Dataset.range(len(streams)).repeat()
    dataset = tf.data.Dataset.choose_from_datasets(streams, order)
  return dataset.prefetch(tf.data.AUTOTUNE)


def replicas_of(input_context):
  """(global ids of the replicas an input pipeline feeds, replicas in sync) for `input_context`.

  tf.distribute numbers replicas worker by worker and gives pipeline i of n the i-th block of
  replicas; `test_worker_and_mirrored_layouts_train_alike` in cluster_test checks it end to end.
  """
  if input_context is None:
    return [0], 1
  per_pipeline = input_context.num_replicas_in_sync // input_context.num_input_pipelines
  first = input_context.input_pipeline_id * per_pipeline
  return list(range(first, first + per_pipeline)), input_context.num_replicas_in_sync


def _replica_train_stream(splits, config, batch_size, replica, num_replicas, mixup_alpha):
  dataset = splits.train.shard(num_replicas, replica) if num_replicas > 1 else splits.train
  seed = config.seed + replica
  dataset = dataset.shuffle(min(_SHUFFLE_BUFFER, splits.num_train), seed=seed).repeat()
  dataset = _train_batches(dataset, splits, batch_size, seed, config.deterministic)
  if mixup_alpha > 0:
    dataset = mixup(dataset, splits.num_classes, mixup_alpha, seed=seed)
  return dataset


def eval_pipeline(splits: Splits, config: DataConfig, global_batch_size: int, input_context=None,
                  split: str = "validation"):
  """One pass over `split` ("validation" or "test"), preprocessed for evaluation, in batches."""
  if split not in ("validation", "test") or (split == "test" and splits.test is None):
    raise DataError(f"Split {split!r} is not available for evaluation; allowed: validation"
                    f"{', test' if splits.test is not None else ''}.")
  dataset, batch_size = _shard(getattr(splits, split), global_batch_size, input_context)
  return _eval_batches(dataset, splits, batch_size, config.deterministic).prefetch(tf.data.AUTOTUNE)


def _shard(dataset, global_batch_size: int, input_context):
  if input_context is None:
    return dataset, global_batch_size
  dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  return dataset, input_context.get_per_replica_batch_size(global_batch_size)


def train_dataset(splits: Splits, config: DataConfig, global_batch_size: int, strategy=None,
                  mixup_alpha: float = 0.0):
  """`train_pipeline` built per input pipeline by `strategy` (default: the current strategy)."""
  strategy = strategy or tf.distribute.get_strategy()
  return strategy.distribute_datasets_from_function(
      lambda context: train_pipeline(splits, config, global_batch_size, context, mixup_alpha))


def eval_dataset(splits: Splits, config: DataConfig, global_batch_size: int, strategy=None,
                 split: str = "validation"):
  """`eval_pipeline` built per input pipeline by `strategy` (default: the current strategy)."""
  strategy = strategy or tf.distribute.get_strategy()
  return strategy.distribute_datasets_from_function(
      lambda context: eval_pipeline(splits, config, global_batch_size, context, split))


def check_train_batch(splits: Splits, batch_size: int, steps_per_epoch: int = 0) -> None:
  """Raises `DataError` if one pass over the training split (`steps_per_epoch` 0) has no full batch."""
  if not steps_per_epoch and splits.num_train < batch_size:
    raise DataError(f"Batch size {batch_size} is larger than the {splits.num_train} training images; "
                    f"use at most {splits.num_train} (--batch_size), or set --steps_per_epoch.")


def check_validation_batches(splits: Splits, config: DataConfig, batch_size: int, num_batches: int,
                             min_train: int = 1) -> None:
  """Raises `DataError` unless `num_batches` batches of `batch_size` fit in the validation carve-out.

  The message names settings that fit: fewer or smaller batches, or (when the training split can
  spare the images and keep `min_train`) a larger `--validation` for the batches asked for.
  """
  held = splits.num_validation
  if batch_size * num_batches <= held:
    return
  size = min(batch_size, held)
  count = min(num_batches, held // size)
  fix = (f"use at most {held} images in {_batches(count, size)} (--eval_batch_size={size} "
         f"--eval_batches={count})")
  for larger_size in dict.fromkeys((batch_size, size)):  # the batch size asked for, if it can be
    larger = _validation_for(config, larger_size * num_batches, splits.num_train + held, min_train)
    if larger is not None and (larger_size, num_batches) != (size, count):
      fix += (f", or --validation={larger} for {num_batches} batch{'es' if num_batches > 1 else ''} "
              f"of {larger_size}")
      break
  raise DataError(f"Validation batch size {batch_size} x {num_batches} "
                  f"batch{'es' if num_batches > 1 else ''} needs {batch_size * num_batches} images "
                  f"but the validation carve-out holds {held}: {fix}.")


def _batches(count: int, size: int) -> str:
  return "1 batch" if count == 1 else f"{count} batches of {size}"


def _validation_for(config: DataConfig, needed: int, total: int, min_train: int):
  """A `--validation` value in the style of `config.validation` (count or fraction) that carves
  `needed` of `total` images out and leaves `min_train`; None if there is none."""
  if needed > total - min_train:
    return None
  hundredths = -(-100 * needed // total)  # the smallest fraction in hundredths that is enough
  fraction = hundredths / 100
  if isinstance(config.validation, float) and round(fraction * total) <= total - min_train:
    return fraction
  return needed


class ValidationBatches:
  """A fixed set of preprocessed validation mini-batches in memory, drawn by index.

  Potential evaluation scores thousands of sampled architectures on one mini-batch each; rebuilding a
  pipeline per model would cost more than the forward pass. The batches are drawn once, from a seeded
  shuffle of the validation split, so the same seed gives the same batches.

  Args:
    splits, config: from `load`.
    batch_size: images per batch.
    num_batches: batches to hold; None holds every full batch of the validation split.
  """

  def __init__(self, splits: Splits, config: DataConfig, batch_size: int, num_batches: int | None = None):
    available = splits.num_validation // batch_size
    check_validation_batches(splits, config, batch_size, num_batches or max(available, 1))
    dataset = splits.validation.shuffle(min(_SHUFFLE_BUFFER, splits.num_validation), seed=config.seed,
                                        reshuffle_each_iteration=False)
    dataset = _eval_batches(dataset, splits, batch_size, deterministic=True, drop_remainder=True)
    dataset = dataset.take(num_batches or available)
    images, labels = zip(*dataset)
    self.images, self.labels = tf.stack(images), tf.stack(labels)

  def __len__(self) -> int:
    return int(self.images.shape[0])

  def batch(self, index: int):
    """The (images, labels) of batch `index` (taken modulo the number of batches)."""
    index = index % len(self)
    return self.images[index], self.labels[index]
