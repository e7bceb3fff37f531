"""tf.data pipelines per replica, augmentation, and the fixed validation batches of the potentials.

  train = batches.train_dataset(splits, config, global_batch_size=128, strategy=strategy)  # infinite
  test = batches.eval_dataset(splits, config, 256, strategy, split="test")                 # one pass
  batches = batches.ValidationBatches(splits, config, batch_size=256, num_batches=8)
  images, labels = batches.batch(i)  # one fixed validation mini-batch, e.g. per sampled model

Pipelines yield (float32 images in [-1, 1] of `splits.image_shape`, int32 labels); with `mixup_alpha` the
training labels are one-hot float32 mixed by `keras.layers.MixUp`. Small images (native side <= 64) are
trained with pad-and-crop and evaluated at full view; larger ones with Inception's random resized crop
and a 87.5% centre crop. Both augmentations add a random horizontal flip.
"""

import keras
import tensorflow as tf

from pcnas_tf.data import data_config
from pcnas_tf.data import sources as data_sources

_EVAL_CROP = 0.875
_SHUFFLE_BUFFER = 10_000


# Preprocessing --------------------------------------------------------------------------------------
#
# Small images have one native size, so they are batched first and augmented a batch at a time (one op
# per batch instead of one per image: several times faster). Larger images may differ in size, so they
# are cropped to the resolution one by one before batching.


def _normalise(images):
  return images / 127.5 - 1.0


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
  return data_sources.resize(tf.cast(tf.slice(image, begin, size), tf.float32), resolution)


def _centre_crop(image, resolution: int):
  """Scales one image's short side to resolution / 0.875 and keeps the central square."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = tf.math.ceil(resolution / _EVAL_CROP) / tf.reduce_min(shape)
  image = tf.image.resize(image, tf.cast(tf.math.round(shape * scale), tf.int32), antialias=True)
  return tf.image.resize_with_crop_or_pad(image, resolution, resolution)


def _train_batches(dataset, splits: data_config.Splits, batch_size: int, seed: int, deterministic: bool):
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


def _eval_batches(dataset, splits: data_config.Splits, batch_size: int, deterministic: bool, drop_remainder=False):
  resolution = splits.image_shape[0]
  parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  if not splits.small_images:
    dataset = dataset.map(lambda image, label: (_centre_crop(image, resolution), label), **parallel)

  def finish(images, labels):
    return _finish(tf.cast(images, tf.float32), splits), labels

  return dataset.batch(batch_size, drop_remainder).map(finish, **parallel)


def _finish(images, splits: data_config.Splits):
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


def train_pipeline(splits: data_config.Splits, config: data_config.DataConfig, global_batch_size: int, input_context=None,
                   mixup_alpha: float = 0.0, skip_batches: int = 0):
  """One input pipeline's endless, shuffled, augmented batches for its replicas.

  Each replica's stream depends only on its global replica id (its data shard and seed), not on how
  replicas are grouped into input pipelines: a pipeline serving k replicas interleaves their streams,
  one batch each in turn, which is how `distribute_datasets_from_function` hands batches to the local
  devices. So two workers of one replica each (MultiWorkerMirroredStrategy) and one process with two
  replicas (MirroredStrategy) train on the same examples per replica per step.

  Args:
    splits: from `load`.
    config: the `data_config.DataConfig` `splits` was loaded with.
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


def eval_pipeline(splits: data_config.Splits, config: data_config.DataConfig, global_batch_size: int, input_context=None,
                  split: str = "validation"):
  """One pass over `split` ("validation" or "test"), preprocessed for evaluation, in batches."""
  if split not in ("validation", "test") or (split == "test" and splits.test is None):
    raise data_config.DataError(f"Split {split!r} is not available for evaluation; allowed: validation"
                    f"{', test' if splits.test is not None else ''}.")
  dataset, batch_size = _shard(getattr(splits, split), global_batch_size, input_context)
  return _eval_batches(dataset, splits, batch_size, config.deterministic).prefetch(tf.data.AUTOTUNE)


def _shard(dataset, global_batch_size: int, input_context):
  if input_context is None:
    return dataset, global_batch_size
  dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  return dataset, input_context.get_per_replica_batch_size(global_batch_size)


def train_dataset(splits: data_config.Splits, config: data_config.DataConfig, global_batch_size: int, strategy=None,
                  mixup_alpha: float = 0.0):
  """`train_pipeline` built per input pipeline by `strategy` (default: the current strategy)."""
  strategy = strategy or tf.distribute.get_strategy()
  return strategy.distribute_datasets_from_function(
      lambda context: train_pipeline(splits, config, global_batch_size, context, mixup_alpha))


def eval_dataset(splits: data_config.Splits, config: data_config.DataConfig, global_batch_size: int, strategy=None,
                 split: str = "validation"):
  """`eval_pipeline` built per input pipeline by `strategy` (default: the current strategy)."""
  strategy = strategy or tf.distribute.get_strategy()
  return strategy.distribute_datasets_from_function(
      lambda context: eval_pipeline(splits, config, global_batch_size, context, split))


def check_train_batch(splits: data_config.Splits, batch_size: int, steps_per_epoch: int = 0) -> None:
  """Raises `data_config.DataError` if one pass over the training split (`steps_per_epoch` 0) has no full batch."""
  if not steps_per_epoch and splits.num_train < batch_size:
    raise data_config.DataError(f"Batch size {batch_size} is larger than the {splits.num_train} training images; "
                    f"use at most {splits.num_train} (--batch_size), or set --steps_per_epoch.")


def check_validation_batches(splits: data_config.Splits, config: data_config.DataConfig, batch_size: int, num_batches: int,
                             min_train: int = 1) -> None:
  """Raises `data_config.DataError` unless `num_batches` batches of `batch_size` fit in the validation carve-out.

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
  carved = not isinstance(config.validation, str)  # a named split has no size to change
  held_by = "the validation carve-out" if carved else f"the validation split {config.validation!r}"
  for larger_size in dict.fromkeys((batch_size, size)) if carved else ():  # the size asked for, if it can be
    larger = _validation_for(config, larger_size * num_batches, splits.num_train + held, min_train)
    if larger is not None and (larger_size, num_batches) != (size, count):
      fix += (f", or --validation={larger} for {num_batches} batch{'es' if num_batches > 1 else ''} "
              f"of {larger_size}")
      break
  raise data_config.DataError(f"Validation batch size {batch_size} x {num_batches} "
                  f"batch{'es' if num_batches > 1 else ''} needs {batch_size * num_batches} images "
                  f"but {held_by} holds {held}: {fix}.")


def _batches(count: int, size: int) -> str:
  return "1 batch" if count == 1 else f"{count} batches of {size}"


def _validation_for(config: data_config.DataConfig, needed: int, total: int, min_train: int):
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

  def __init__(self, splits: data_config.Splits, config: data_config.DataConfig, batch_size: int, num_batches: int | None = None):
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
