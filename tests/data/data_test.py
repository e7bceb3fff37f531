"""Tests of the data module on a 300-image slice of Debian's Fashion-MNIST and tiny image folders."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from pcnas_tf import files
from pcnas_tf.data import data_config
from pcnas_tf.data import sources as data_sources
from pcnas_tf.data import batches as batches_lib
from pcnas_tf.data import fashion_mnist
from pcnas_tf.space import search_space as space
from tests import helpers as testing

NUM_TRAIN, NUM_TEST, NUM_VALIDATION = 300, 100, 50


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
  """(config, the slice's train images): a prepared 300 + 100 image Fashion-MNIST."""
  if not os.path.exists(data_config.DEBIAN_FASHION_MNIST):
    pytest.skip("Debian's dataset-fashion-mnist is not installed (`make setup` installs it).")
  root = tmp_path_factory.mktemp("fashion")
  train_images = testing.write_fashion_slice(str(root / "idx"), NUM_TRAIN, NUM_TEST)
  config = data_config.DataConfig(data_dir=str(root / "tfds"), idx_dir=str(root / "idx"),
                           validation=NUM_VALIDATION, channels=1)
  fashion_mnist.prepare(config.data_dir, config.idx_dir)
  return config, train_images


def images_of(dataset):
  return [image.tobytes() for image, _ in dataset.as_numpy_iterator()]


def write_png(path, image):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tf.io.write_file(path, tf.io.encode_png(image))


def image_folder(root, side=8, channels=3, per_class=6, classes=("cat", "dog")):
  """root/{train,test}/<class>/<i>.png, every image different (its pixels encode its index)."""
  for split in ("train", "test"):
    for label, name in enumerate(classes):
      for index in range(per_class):
        value = 10 * label + index + (100 if split == "test" else 0)
        image = np.full((side, side, channels), value, np.uint8)
        image[0, 0] = 255 - value  # Asymmetric, so a flip shows.
        write_png(os.path.join(root, split, name, f"{index}.png"), image)
  return str(root)


# Fashion-MNIST ---------------------------------------------------------------------------------------


def test_preparation_is_cached_and_never_rereads_the_idx_files(fashion):
  config, _ = fashion
  builder = fashion_mnist.prepare(config.data_dir, idx_dir="/nonexistent")
  assert builder.info.splits["train"].num_examples == NUM_TRAIN
  assert builder.info.splits["test"].num_examples == NUM_TEST


def test_load_counts_and_native_shape(fashion):
  config, _ = fashion
  splits = data_sources.load(config)
  assert (splits.num_train, splits.num_validation, splits.num_test) == (250, 50, 100)
  assert splits.num_classes == 10
  assert splits.image_shape == (28, 28, 1) and splits.small_images


def test_carve_out_is_disjoint_and_covers_the_train_split(fashion):
  config, train_images = fashion
  splits = data_sources.load(config)
  train, validation = images_of(splits.train), images_of(splits.validation)
  assert len(train) == NUM_TRAIN - NUM_VALIDATION and len(validation) == NUM_VALIDATION
  assert not set(train) & set(validation)
  assert set(train) | set(validation) == {image.tobytes() for image in train_images}


def test_carve_out_depends_only_on_the_seed(fashion):
  config, _ = fashion
  first = set(images_of(data_sources.load(config).validation))
  again = set(images_of(data_sources.load(config).validation))
  other = set(images_of(data_sources.load(data_config.DataConfig(**{**config.__dict__, "seed": 1})).validation))
  assert first == again
  assert first != other


def test_validation_fraction_of_the_train_split(fashion):
  config, _ = fashion
  splits = data_sources.load(data_config.DataConfig(**{**config.__dict__, "validation": 0.1}))
  assert (splits.num_train, splits.num_validation) == (270, 30)


@pytest.mark.parametrize("validation", [NUM_TRAIN, NUM_TRAIN + 1, 0.999])
def test_carve_out_as_large_as_the_train_split_is_an_error(fashion, validation):
  config, _ = fashion
  with pytest.raises(data_config.DataError, match="Validation carve-out"):
    data_sources.load(data_config.DataConfig(**{**config.__dict__, "validation": validation}))


@pytest.mark.parametrize("validation", [0, -5, 0.0, 1.0, -0.1])
def test_carve_out_of_nothing_is_an_error(validation):
  with pytest.raises(data_config.DataError, match="Validation"):
    data_config.DataConfig(validation=validation)


def test_labels_outside_the_class_range_are_an_error(tmp_path):
  if not os.path.exists(data_config.DEBIAN_FASHION_MNIST):
    pytest.skip("Debian's dataset-fashion-mnist is not installed.")
  testing.write_fashion_slice(str(tmp_path / "idx"), NUM_TRAIN, NUM_TEST, labels_offset=1)  # Labels 1..10; 10 is out of range.
  with pytest.raises(data_config.DataError, match=r"Label 10 .* outside the class range 0..9"):
    fashion_mnist.prepare(str(tmp_path / "tfds"), str(tmp_path / "idx"))


def test_a_preparation_that_loses_the_race_to_another_process_uses_the_winners(tmp_path, monkeypatch):
  # Two shards of a build prepare one data directory at once; tfds' rename of the second copy fails
  # because the first is in place. Simulated: the winner prepares inside the loser's call.
  if not os.path.exists(data_config.DEBIAN_FASHION_MNIST):
    pytest.skip("Debian's dataset-fashion-mnist is not installed (`make setup` installs it).")
  idx_dir, data_dir = str(tmp_path / "idx"), str(tmp_path / "tfds")
  testing.write_fashion_slice(idx_dir, 40, 20)
  original = fashion_mnist.FashionMnistLocal.download_and_prepare

  def lose_the_race(self, **kwargs):
    monkeypatch.setattr(fashion_mnist.FashionMnistLocal, "download_and_prepare", original)
    fashion_mnist.prepare(data_dir, idx_dir)  # The other process finishes first.
    raise OSError(f"Cannot rename {data_dir}/incomplete. Destination already exists.")

  monkeypatch.setattr(fashion_mnist.FashionMnistLocal, "download_and_prepare", lose_the_race)
  builder = fashion_mnist.prepare(data_dir, idx_dir)
  assert builder.info.splits["train"].num_examples == 40


def test_missing_idx_files_name_the_file(tmp_path):
  with pytest.raises(data_config.DataError, match="Cannot read IDX file .*train-images"):
    data_sources.load(data_config.DataConfig(data_dir=str(tmp_path), idx_dir=str(tmp_path / "missing")))


def test_unwritable_data_directory_is_an_error(fashion, tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(data_config.DataError, match=f"Cannot prepare Fashion-MNIST in data directory {tmp_path}"):
    data_sources.load(data_config.DataConfig(data_dir=str(tmp_path / "file" / "tfds"), idx_dir=fashion[0].idx_dir))


def test_resolution_below_the_total_stride_is_an_error(fashion):
  config, _ = fashion
  stride = space.macro_space(0.25).total_stride
  with pytest.raises(data_config.DataError, match=f"Resolution 4 is smaller .* total stride {stride}"):
    data_sources.load(data_config.DataConfig(**{**config.__dict__, "resolution": 4}), min_resolution=stride)


# Pipelines -------------------------------------------------------------------------------------------


def rgb_config(config, **changes):
  return data_config.DataConfig(**{**config.__dict__, "channels": 3, "resolution": 32, **changes})


def test_train_batches_are_rgb_normalised_float32(fashion):
  config = rgb_config(fashion[0])
  splits = data_sources.load(config, min_resolution=8)
  images, labels = next(iter(batches_lib.train_pipeline(splits, config, 16)))
  assert images.shape == (16, 32, 32, 3) and images.dtype == tf.float32
  assert labels.shape == (16,) and labels.dtype == tf.int32
  assert -1.0 <= float(tf.reduce_min(images)) < float(tf.reduce_max(images)) <= 1.0
  assert np.all((labels.numpy() >= 0) & (labels.numpy() < 10))
  # Grey images repeated to RGB: the three channels are equal.
  np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_deterministic_pipelines_repeat_their_batches_and_follow_the_seed(fashion):
  config = rgb_config(fashion[0], deterministic=True)
  splits = data_sources.load(config)

  def first_batches(config):
    return [images.numpy() for images, _ in batches_lib.train_pipeline(splits, config, 32).take(3)]

  first, again = first_batches(config), first_batches(config)
  other = first_batches(data_config.DataConfig(**{**config.__dict__, "seed": 7}))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first[0], other[0])


def test_pad_and_crop_cuts_a_window_of_the_padded_image():
  images = tf.random.stateless_uniform((8, 8, 8, 1), (1, 2), maxval=255)
  crops = batches_lib._pad_and_crop(images, tf.constant([3, 4]), 8).numpy()
  padded = np.pad(images.numpy(), [(0, 0), (1, 1), (1, 1), (0, 0)])
  offsets = set()
  for image, crop in zip(padded, crops):
    windows = [(y, x) for y in range(3) for x in range(3)
               if np.array_equal(image[y:y + 8, x:x + 8], crop)]
    assert windows, "a crop is not a window of its padded image"
    offsets.add(windows[0])
  assert len(offsets) > 1, "every image was cropped at the same offset"


def test_random_flip_mirrors_some_images_and_keeps_others():
  images = tf.reshape(tf.range(32 * 4 * 4, dtype=tf.float32), (32, 4, 4, 1))
  flipped = batches_lib._random_flip(images, tf.constant([0, 1])).numpy()
  mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images.numpy())]
  kept = [np.array_equal(f, i) for f, i in zip(flipped, images.numpy())]
  assert all(m or k for m, k in zip(mirrored, kept))
  assert any(mirrored) and any(kept)


def test_eval_pipeline_passes_over_the_test_split_once(fashion):
  config = rgb_config(fashion[0])
  splits = data_sources.load(config)
  batches = list(batches_lib.eval_pipeline(splits, config, 32, split="test"))
  assert [len(labels) for _, labels in batches] == [32, 32, 32, 4]
  # Small images are evaluated whole: the eval image is the normalised stored image.
  stored = next(iter(splits.test.batch(32)))[0]
  np.testing.assert_allclose(batches[0][0], tf.cast(stored, tf.float32) / 127.5 - 1, atol=1e-6)


def test_per_replica_batches_split_the_global_batch_and_shard_the_data(fashion):
  config = rgb_config(fashion[0])
  splits = data_sources.load(config)
  contexts = [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i,
                                         num_replicas_in_sync=4) for i in range(2)]
  train = batches_lib.train_pipeline(splits, config, 64, contexts[0])
  assert next(iter(train))[0].shape[0] == 16
  shards = [np.concatenate([images.numpy() for images, _ in batches_lib.eval_pipeline(splits, config, 64, c)])
            for c in contexts]
  assert len(shards[0]) + len(shards[1]) == NUM_VALIDATION
  assert not {i.tobytes() for i in shards[0]} & {i.tobytes() for i in shards[1]}


def test_each_replica_sees_the_same_batches_however_replicas_are_grouped_into_pipelines(fashion):
  config = dataclasses.replace(fashion[0], deterministic=True)
  splits = data_sources.load(config)

  def context(pipelines, pipeline):
    return tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pipeline,
                                      num_replicas_in_sync=2)

  def batches(pipeline, count):
    return [images.numpy() for images, _ in pipeline.take(count)]

  # Two workers of one replica each, against one pipeline that feeds two replicas in turn.
  per_worker = [batches(batches_lib.train_pipeline(splits, config, 32, context(2, i)), 3) for i in range(2)]
  interleaved = batches(batches_lib.train_pipeline(splits, config, 32, context(1, 0)), 6)
  for step in range(3):
    for replica in range(2):
      np.testing.assert_array_equal(interleaved[2 * step + replica], per_worker[replica][step])
  assert not np.array_equal(per_worker[0][0], per_worker[1][0])
  # Resumption skips whole steps of every replica's stream.
  resumed = batches(batches_lib.train_pipeline(splits, config, 32, context(1, 0), skip_batches=2), 2)
  np.testing.assert_array_equal(resumed[1], per_worker[1][2])


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_splits_the_global_batch(fashion):
  # Logical devices must be configured before TensorFlow starts, hence a fresh process.
  script = textwrap.dedent(f"""
      import tensorflow as tf
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      from pcnas_tf.data import data_config
      from pcnas_tf.data import sources as data_sources
      from pcnas_tf.data import batches as batches_lib
      config = data_config.DataConfig(**{rgb_config(fashion[0]).__dict__!r})
      strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
      splits = data_sources.load(config)
      images, labels = next(iter(batches_lib.train_dataset(splits, config, 32, strategy)))
      print([tuple(x.shape) for x in strategy.experimental_local_results(images)])
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == "[(16, 32, 32, 3), (16, 32, 32, 3)]"


def test_mixup_gives_one_hot_mixtures(fashion):
  config = rgb_config(fashion[0])
  splits = data_sources.load(config)
  images, labels = next(iter(batches_lib.train_pipeline(splits, config, 64, mixup_alpha=0.4)))
  assert images.shape == (64, 32, 32, 3) and labels.shape == (64, 10) and labels.dtype == tf.float32
  np.testing.assert_allclose(tf.reduce_sum(labels, axis=1), 1.0, rtol=1e-5)
  assert float(tf.reduce_min(tf.reduce_max(labels, axis=1))) < 0.99  # Some labels are mixed.


def test_mixup_is_the_same_for_the_same_seed_and_differs_for_another(fashion):
  config = rgb_config(fashion[0], deterministic=True)
  splits = data_sources.load(config)

  def first_batch(seed):
    pipeline = batches_lib.train_pipeline(splits, dataclasses.replace(config, seed=seed), 32, mixup_alpha=0.4)
    return [tensor.numpy() for tensor in next(iter(pipeline))]

  first, again, other = first_batch(1), first_batch(1), first_batch(2)
  assert all(np.array_equal(a, b) for a, b in zip(first, again))
  assert not np.array_equal(first[1], other[1])


# Validation batches ----------------------------------------------------------------------------------


def test_validation_batches_are_fixed_for_a_seed(fashion):
  config = rgb_config(fashion[0], validation=64)
  splits = data_sources.load(config)
  batches = batches_lib.ValidationBatches(splits, config, batch_size=16)
  again = batches_lib.ValidationBatches(splits, config, batch_size=16)
  other = batches_lib.ValidationBatches(data_sources.load(data_config.DataConfig(**{**config.__dict__, "seed": 3})),
                                 config, batch_size=16)
  assert len(batches) == 4 and batches.batch(0)[0].shape == (16, 32, 32, 3)
  np.testing.assert_array_equal(batches.images, again.images)
  np.testing.assert_array_equal(batches.batch(5)[1], batches.batch(1)[1])
  assert not np.array_equal(batches.batch(1)[0], batches.batch(2)[0])
  assert not np.array_equal(batches.images, other.images)


def test_more_validation_batches_than_images_is_an_error(fashion):
  config = fashion[0]
  splits = data_sources.load(config)
  with pytest.raises(data_config.DataError, match=r"batch size 16 x 4 batches needs 64 images but the "
                     r"validation carve-out holds 50: use at most 50 images in 3 batches of 16 "
                     r"\(--eval_batch_size=16 --eval_batches=3\), or --validation=64 for 4 "
                     r"batches of 16\.$"):
    batches_lib.ValidationBatches(splits, config, batch_size=16, num_batches=4)
  with pytest.raises(data_config.DataError, match=r"batch size 64 x 1 batch needs 64 images but the "
                     r"validation carve-out holds 50: use at most 50 images in 1 batch "
                     r"\(--eval_batch_size=50 --eval_batches=1\), or --validation=64 for 1 batch of 64\.$"):
    batches_lib.ValidationBatches(splits, config, batch_size=64)


def _counts(num_train, num_validation):
  """`Splits` with only the counts, which is all the size checks read."""
  return data_config.Splits(None, None, None, 8, (48, 48, 3), num_train, num_validation, 0, (48, 48), True)


@pytest.mark.parametrize("validation, batch_size, message", [
    (0.1, 256, r"Validation batch size 256 x 4 batches needs 1024 images but the validation carve-out "
               r"holds 96: use at most 96 images in 1 batch \(--eval_batch_size=96 --eval_batches=1\), "
               r"or --validation=0.4 for 4 batches of 96\.$"),
    (0.1, 96, r"batch size 96 x 4 batches needs 384 images .* or --validation=0.4 for 4 batches of 96"),
    (96, 32, r"32 x 4 batches needs 128 .* in 3 batches of 32 .* or --validation=128 for 4 batches of 32"),
])
def test_validation_batch_error_names_settings_that_fit(validation, batch_size, message):
  config = data_config.DataConfig(dataset="image_folder", validation=validation)
  with pytest.raises(data_config.DataError, match=message):
    batches_lib.check_validation_batches(_counts(864, 96), config, batch_size, 4, min_train=128)
  batches_lib.check_validation_batches(_counts(864, 96), config, 96, 1)
  batches_lib.check_validation_batches(_counts(864, 96), config, 24, 4)


def test_validation_batch_error_offers_no_carve_out_that_leaves_too_few_training_images():
  with pytest.raises(data_config.DataError, match=r"in 1 batch \(--eval_batch_size=96 --eval_batches=1\)\.$"):
    batches_lib.check_validation_batches(_counts(864, 96), data_config.DataConfig(validation=0.1), 256, 4, 900)


def test_batch_larger_than_the_training_split_is_an_error_unless_steps_are_set():
  with pytest.raises(data_config.DataError, match=r"Batch size 1000 is larger than the 864 training images; "
                     r"use at most 864 \(--batch_size\), or set --steps_per_epoch\."):
    batches_lib.check_train_batch(_counts(864, 96), 1000)
  batches_lib.check_train_batch(_counts(864, 96), 1000, steps_per_epoch=5)
  batches_lib.check_train_batch(_counts(864, 96), 864)


# Image folders and other sources ---------------------------------------------------------------------


def folder_config(root, **changes):
  return data_config.DataConfig(**{"dataset": "image_folder", "data_dir": str(root), "validation": 2, **changes})


def test_image_folder_loads_grey_images_as_rgb(tmp_path):
  root = image_folder(tmp_path / "images", channels=1)
  config = folder_config(root)
  splits = data_sources.load(config)
  assert (splits.num_classes, splits.num_train, splits.num_validation, splits.num_test) == (2, 10, 2, 12)
  assert splits.image_shape == (8, 8, 3)
  images, labels = next(iter(batches_lib.eval_pipeline(splits, config, 12, split="test")))
  assert images.shape == (12, 8, 8, 3)
  assert sorted(labels.numpy().tolist()) == [0] * 6 + [1] * 6


def test_image_folder_of_large_images_is_cropped_to_the_resolution(tmp_path):
  root = image_folder(tmp_path / "images", side=80)
  config = folder_config(root, resolution=32)
  splits = data_sources.load(config)
  assert not splits.small_images
  train_images, _ = next(iter(batches_lib.train_pipeline(splits, config, 4)))
  eval_images, _ = next(iter(batches_lib.eval_pipeline(splits, config, 4, split="test")))
  assert train_images.shape == eval_images.shape == (4, 32, 32, 3)
  assert float(tf.reduce_max(tf.abs(train_images))) <= 1.0


def test_image_folder_of_mixed_sizes_needs_a_resolution(tmp_path):
  root = image_folder(tmp_path / "images")
  write_png(os.path.join(root, "train", "cat", "big.png"), np.zeros((9, 9, 3), np.uint8))
  with pytest.raises(data_config.DataError, match="images of different sizes; set a square resolution"):
    data_sources.load(folder_config(root))


def test_missing_image_folder_is_an_error(tmp_path):
  with pytest.raises(data_config.DataError, match=f"Image folder {tmp_path}/nothing does not exist"):
    data_sources.load(folder_config(tmp_path / "nothing"))


def test_empty_class_folder_is_an_error(tmp_path):
  root = image_folder(tmp_path / "images")
  os.makedirs(os.path.join(root, "train", "bird"))
  with pytest.raises(data_config.DataError, match="Class folder .*train/bird has no .jpg"):
    data_sources.load(folder_config(root))


def test_single_class_is_an_error(tmp_path):
  root = image_folder(tmp_path / "images", classes=("cat",))
  with pytest.raises(data_config.DataError, match="has 1 class folder"):
    data_sources.load(folder_config(root))


def test_corrupt_image_fails_by_name_or_is_skipped_and_counted(tmp_path):
  root = image_folder(tmp_path / "images")
  corrupt = os.path.join(root, "train", "dog", "broken.png")
  with open(corrupt, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n not really a png")
  with pytest.raises(data_config.DataError, match=f"Image file {corrupt} cannot be decoded .*; fix or "
                     f"remove it, or pass --skip_corrupt to skip such files\\.$"):
    data_sources.load(folder_config(root))
  splits = data_sources.load(folder_config(root, skip_corrupt=True))
  assert splits.skipped == 1 and splits.num_train + splits.num_validation == 12
  assert len(images_of(splits.train)) + len(images_of(splits.validation)) == 12


def _failing_on(locked, call):
  """`call`, except that it raises PermissionError for the path `locked`, as it does for a user who may not
  read it. Tests run as root, which reads a chmod 000 file or folder anyway, so the denial is simulated."""

  def wrapped(path, *args, **kwargs):
    if os.path.abspath(path) == locked:
      raise PermissionError(13, "Permission denied", str(path))
    return call(path, *args, **kwargs)

  return wrapped


def test_unreadable_class_folder_says_permission_denied(tmp_path, monkeypatch):
  root = image_folder(tmp_path / "images")
  locked = os.path.join(root, "train", "dog")
  os.chmod(locked, 0)
  monkeypatch.setattr(os, "listdir", _failing_on(locked, os.listdir))  # see `_failing_on`
  try:
    with pytest.raises(data_config.DataError, match=f"^Class folder {locked} cannot be read: permission "
                       r"denied; make it readable or remove it\.$"):
      data_sources.load(folder_config(root))
  finally:
    os.chmod(locked, 0o755)


def test_unreadable_image_says_permission_denied_not_corrupt(tmp_path, monkeypatch):
  root = image_folder(tmp_path / "images")
  locked = os.path.join(root, "train", "cat", "0.png")
  # As root TensorFlow reads a chmod 000 file too, so the file also gets undecodable bytes: what the
  # decoding pass meets for a user who may not read it. `files.open_file`, which `sources` opens it with, is
  # denied on it as for that user.
  with open(locked, "wb") as f:
    f.write(b"unreadable")
  os.chmod(locked, 0)
  monkeypatch.setattr(files, "open_file", _failing_on(locked, files.open_file))
  try:
    with pytest.raises(data_config.DataError, match=f"^Image file {locked} cannot be read: permission "
                       r"denied \(1 unusable in all\); make it readable or remove it, or "
                       r"pass --skip_corrupt to skip such files\.$"):
      data_sources.load(folder_config(root))
    assert data_sources.load(folder_config(root, skip_corrupt=True)).skipped == 1
  finally:
    os.chmod(locked, 0o644)


def test_negative_resolution_names_none_for_the_native_size():
  with pytest.raises(data_config.DataError, match=r"^Resolution -28 must be a positive image side, or None "
                     r"for the native size\.$"):
    data_config.DataConfig(resolution=-28)


@pytest.mark.parametrize("fields, message", [
    ({"seed": -1}, r"^Seed -1 must be >= 0\.$"),
    ({"dataset": ""}, r"^Dataset name is empty; allowed: fashion_mnist, image_folder"),
    ({"data_dir": ""}, r"^Data directory is empty; give a directory"),
])
def test_config_rejects_values_no_source_could_use(fields, message):
  with pytest.raises(data_config.DataError, match=message):
    data_config.DataConfig(**fields)


@pytest.mark.parametrize("name", ["Bad Name!", "cifar10:9.9.9"])
def test_malformed_dataset_name_is_an_error(tmp_path, name):
  with pytest.raises(data_config.DataError, match=f"^Dataset {name!r} cannot be opened .*; allowed: "
                     f"fashion_mnist, image_folder or the name of a tfds dataset"):
    data_sources.load(data_config.DataConfig(dataset=name, data_dir=str(tmp_path)))


def test_unknown_dataset_is_an_error(tmp_path):
  with pytest.raises(data_config.DataError, match="Unknown dataset 'no_such_set'; allowed: fashion_mnist"):
    data_sources.load(data_config.DataConfig(dataset="no_such_set", data_dir=str(tmp_path)))


def test_missing_data_directory_is_an_error(tmp_path):
  with pytest.raises(data_config.DataError, match=f"Data directory {tmp_path}/absent does not exist"):
    data_sources.load(data_config.DataConfig(dataset="cifar10", data_dir=str(tmp_path / "absent")))


def test_unprepared_tfds_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(data_config.DataError, match=f"not prepared .* `tfds build cifar10 --data_dir={tmp_path}`"):
    data_sources.load(data_config.DataConfig(dataset="cifar10", data_dir=str(tmp_path)))


def test_prepared_tfds_dataset_is_read_without_downloading(fashion):
  # Any prepared dataset is found by name; here the Fashion-MNIST slice under its tfds name.
  config = data_config.DataConfig(**{**fashion[0].__dict__, "dataset": "fashion_mnist_local"})
  splits = data_sources.load(config)
  assert (splits.num_train, splits.num_test, splits.num_classes) == (250, 100, 10)
