"""Tests of in-memory images as a data source: checks, conversion, the written directory, and that
arrays load as the same images as an image folder of them."""

import os

import numpy as np
import pytest
import tensorflow as tf

from pcnas_tf.data import arrays
from pcnas_tf.data import batches as batches_lib
from pcnas_tf.data import data_config
from pcnas_tf.data import sources as data_sources

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
LABELS = np.arange(40) % 4


def arrays_config(directory, **changes):
  return data_config.DataConfig(**{"dataset": "arrays", "data_dir": directory, "validation": 8,
                                   "channels": 1, "deterministic": True, **changes})


def pixels_of(dataset):
  return sorted(image.tobytes() for image, _ in dataset.as_numpy_iterator())


# Checks and conversion ---------------------------------------------------------------------------------


def test_grey_images_get_a_channel_and_float_pixels_are_scaled():
  grey = arrays.checked_images(IMAGES[..., 0])
  assert grey.shape == (40, 8, 8, 1) and grey.dtype == np.uint8
  np.testing.assert_array_equal(grey, IMAGES)
  np.testing.assert_array_equal(arrays.checked_images(IMAGES / 255.0), IMAGES)  # [0, 1]
  np.testing.assert_array_equal(arrays.checked_images(IMAGES.astype(np.float32)), IMAGES)  # [0, 255]
  np.testing.assert_array_equal(arrays.checked_images(IMAGES.astype(np.int64)), IMAGES)


def test_integral_float_labels_are_taken_as_classes():
  labels = arrays.checked_labels(LABELS.astype(np.float32)[:, None], 40)
  assert labels.dtype == np.int32 and labels.tolist() == LABELS.tolist()


@pytest.mark.parametrize("images, message", [
    (np.zeros((4, 8)), r"^x has shape \(4, 8\) \(rank 2\); images need rank 3 \(N, H, W\) or 4 \(N, H, W, C\)\.$"),
    (np.zeros((2, 4, 8, 8, 1)), r"rank 5\); images need rank 3"),
    (np.zeros((4, 8, 8, 2)), r"^x has 2 channels .*; allowed: 1 \(grey\), 3 \(RGB\) or 4 \(RGBA\)\.$"),
    (np.zeros((0, 8, 8)), r"needs at least one image"),
    (np.full((2, 8, 8), 300), r"^x holds pixel values 300\.\.300; integer pixels must be in 0\.\.255\.$"),
    (np.full((2, 8, 8), -0.5), r"float pixels must be finite, in \[0, 1\] or \[0, 255\]"),
    (np.full((2, 8, 8), np.nan), r"holds pixel values nan"),
    (np.full((2, 8, 8), "a"), r"^x has dtype <U1; pixels must be integers"),
    (np.zeros((2, 8, 8), bool), r"^x has dtype bool"),
])
def test_bad_images_are_one_sentence_each(images, message):
  with pytest.raises(data_config.DataError, match=message):
    arrays.checked_images(images)


@pytest.mark.parametrize("labels, num_classes, message", [
    (np.eye(4)[LABELS[:4]], None, r"^y has shape \(4, 4\), one-hot or scores per class; give one integer "
     r"class per image \(e\.g\. y\.argmax\(axis=1\)\)\.$"),
    ([0, 1, 2], None, r"^y has shape \(3,\) for 4 images; give one integer label per image, shape \(4,\)\.$"),
    ([0, 1, 0.5, 1], None, r"^y holds 0\.5, which is not an integer class"),
    (["a", "b", "a", "b"], None, r"^y has dtype <U1; labels must be integers"),
    ([0, 1, -1, 1], None, r"^y holds label -1, out of range; labels must be integers >= 0\.$"),
    ([0, 1, 4, 1], 4, r"^y holds label 4, out of range; labels must be 0\.\.3\.$"),
    ([0, 1, 0, 1], 1, r"^Number of classes 1 is not allowed; it must be an integer >= 2\.$"),
])
def test_bad_labels_are_one_sentence_each(labels, num_classes, message):
  with pytest.raises(data_config.DataError, match=message):
    arrays.checked_labels(np.asarray(labels), 4, num_classes)


def test_a_single_class_is_refused_unless_more_are_named():
  split = arrays.checked(IMAGES[:4], [0, 0, 0, 0])
  with pytest.raises(data_config.DataError, match="y holds only class 0; classification needs at least 2"):
    arrays.classes_of({"train": split})
  assert arrays.classes_of({"train": split}, 3) == 3


# tf.data.Dataset input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [None, 7])
def test_a_dataset_gives_the_arrays_it_holds(batch):
  dataset = tf.data.Dataset.from_tensor_slices((IMAGES, LABELS))
  split = arrays.from_dataset(dataset if batch is None else dataset.batch(batch))
  np.testing.assert_array_equal(split.images, IMAGES)
  np.testing.assert_array_equal(split.labels, LABELS)


def test_a_dataset_of_mixed_sizes_is_resized_to_the_resolution():
  sizes = [(8, 8), (12, 10), (6, 6)]
  dataset = tf.data.Dataset.from_generator(
      lambda: ((np.full(size + (3,), 100, np.uint8), i) for i, size in enumerate(sizes)),
      output_signature=(tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((), tf.int64)))
  with pytest.raises(data_config.DataError, match=r"images of different sizes \(.*\); pass a resolution"):
    arrays.from_dataset(dataset)
  split = arrays.from_dataset(dataset, resolution=8)
  assert split.images.shape == (3, 8, 8, 3) and np.all(split.images == 100)


def test_a_dataset_of_other_elements_is_refused():
  with pytest.raises(data_config.DataError, match=r"give one of \(image, label\) pairs"):
    arrays.from_dataset(tf.data.Dataset.from_tensor_slices(IMAGES))


# The directory -------------------------------------------------------------------------------------------


def test_arrays_are_written_once_per_content(tmp_path):
  splits = {"train": arrays.checked(IMAGES, LABELS)}
  first = arrays.write(str(tmp_path), splits, 4)
  assert arrays.write(str(tmp_path), splits, 4) == first
  other = arrays.write(str(tmp_path), {"train": arrays.checked(IMAGES, (LABELS + 1) % 4)}, 4)
  assert other != first and sorted(os.listdir(tmp_path)) == sorted([os.path.basename(first),
                                                                     os.path.basename(other)])
  read, num_classes = arrays.read(first)
  assert num_classes == 4
  np.testing.assert_array_equal(read["train"].images, IMAGES)


def test_a_directory_without_arrays_is_refused(tmp_path):
  with pytest.raises(data_config.DataError, match="holds no arrays"):
    data_sources.load(arrays_config(str(tmp_path)))


def test_written_arrays_load_as_the_arrays_in_memory(tmp_path):
  splits = {"train": arrays.checked(IMAGES, LABELS)}
  config = arrays_config(arrays.write(str(tmp_path), splits, 4), resolution=4)
  from_disk, in_memory = data_sources.load(config), data_sources.load_arrays(splits, 4, config)
  assert (from_disk.num_train, from_disk.num_validation, from_disk.image_shape) == (32, 8, (4, 4, 1))
  for name in ("train", "validation"):
    assert pixels_of(getattr(from_disk, name)) == pixels_of(getattr(in_memory, name))


def test_arrays_load_as_an_image_folder_of_them(tmp_path):
  rgba = RNG.integers(0, 256, (12, 8, 8, 4), dtype=np.uint8)
  for index, image in enumerate(rgba):
    path = tmp_path / "folder" / "train" / f"c{index % 2}" / f"{index:02d}.png"
    os.makedirs(path.parent, exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(image))
  splits = {"train": arrays.checked(rgba, np.arange(12) % 2)}
  for channels in (3, 1):
    folder = data_config.DataConfig(dataset="image_folder", data_dir=str(tmp_path / "folder"), validation=2,
                                    channels=channels)
    config = arrays_config(str(tmp_path), channels=channels, validation=2)
    loaded, expected = data_sources.load_arrays(splits, 2, config), data_sources.load(folder)
    both = [sorted(image.tobytes() for split in (s.train, s.validation)
                   for image, _ in split.as_numpy_iterator()) for s in (loaded, expected)]
    if channels == 3:  # the alpha channel dropped, as a PNG decoder drops it
      assert both[0] == both[1]
    else:  # grey by TensorFlow's weights here, by libpng's there: the same to a grey level
      difference = np.abs(np.frombuffer(b"".join(both[0]), np.uint8).astype(int)
                          - np.frombuffer(b"".join(both[1]), np.uint8).astype(int))
      assert loaded.image_shape == expected.image_shape == (8, 8, 1) and difference.max() <= 1


def test_a_named_validation_split_is_taken_whole(tmp_path):
  splits = {"train": arrays.checked(IMAGES[:30], LABELS[:30]),
            "validation": arrays.checked(IMAGES[30:], LABELS[30:])}
  config = arrays_config(str(tmp_path), validation="validation")
  loaded = data_sources.load_arrays(splits, 4, config)
  assert (loaded.num_train, loaded.num_validation, loaded.test) == (30, 10, None)
  assert pixels_of(loaded.validation) == sorted(image.tobytes() for image in IMAGES[30:])
  with pytest.raises(data_config.DataError, match=r"has no split 'val' to validate on; found: train, "
                     r"validation"):
    data_sources.load_arrays(splits, 4, arrays_config(str(tmp_path), validation="val"))
  with pytest.raises(data_config.DataError, match="Validation split 'train' is not allowed"):
    arrays_config(str(tmp_path), validation="train")
  loaded = data_sources.load_arrays({"train": splits["train"], "validation": splits["train"]}, 4, config)
  with pytest.raises(data_config.DataError, match=r"but the validation split 'validation' holds 30: use at "
                     r"most 30 images in 1 batch \(--eval_batch_size=30 --eval_batches=1\)\.$"):
    batches_lib.check_validation_batches(loaded, config, 32, 2)
