"""What defines a data set for a run: its source, split, resolution and channels (`DataConfig`), and the
loaded splits (`Splits`) that `sources.load` returns."""

import dataclasses
import os

import tensorflow as tf

from pcnas_tf import errors

DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST = "fashion_mnist"
IMAGE_FOLDER = "image_folder"
ARRAYS = "arrays"  # in-memory images written to a directory by `arrays.write`
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Fields that say where this machine keeps the data, not which data: two runs that differ only in these
# used the same images (compared by the rank check and the ground-truth tables).
MACHINE_LOCAL = ("data_dir", "idx_dir", "cache_bytes", "skip_corrupt")
TEST_SPLITS = ("test", "validation", "val")  # The first one present is the split reported at the end.


class DataError(errors.UserError):
  """A data set, a data directory or a data option is not usable."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the images come from and how they are split and preprocessed.

  Attributes:
    dataset: `fashion_mnist`, `image_folder`, `arrays`, or the name of a tfds dataset prepared under
      `data_dir`.
    data_dir: the tfds data directory (prepared datasets; Fashion-MNIST is prepared here), the root of
      an image folder, or the directory `arrays.write` wrote.
    resolution: side of the square model input (>= 1); None keeps the native size (square images only).
    channels: 3 (grey images are repeated to RGB) or 1 (colour images are converted to grey).
    validation: images carved out of the training split: a count (int) or a fraction in (0, 1); or the
      name of a split of the source (str, e.g. "validation") that is the validation set as it is.
    seed: seeds the carve-out, shuffling and augmentation (>= 0).
    deterministic: keep element order fixed in parallel maps (slower); with it the same seed gives
      the same batches.
    skip_corrupt: skip (and count) image files that cannot be read or decoded, instead of failing on the
      first.
    cache_bytes: cache decoded images in memory when a split's estimated size is at most this.
    idx_dir: where Fashion-MNIST's IDX files are read from when it is first prepared.
  """
  dataset: str = FASHION_MNIST
  data_dir: str = DEFAULT_DATA_DIR
  resolution: int | None = None
  channels: int = 3
  validation: int | float | str = 5000
  seed: int = 0
  deterministic: bool = False
  skip_corrupt: bool = False
  cache_bytes: int = 2 << 30
  idx_dir: str = DEBIAN_FASHION_MNIST

  def __post_init__(self):
    if not self.dataset:
      raise DataError(f"Dataset name is empty; allowed: {FASHION_MNIST}, {IMAGE_FOLDER} or the name of a "
                      f"tfds dataset (e.g. cifar10).")
    if not self.data_dir:
      raise DataError("Data directory is empty; give a directory (of tfds datasets, or an image folder's "
                      "root).")
    if self.channels not in (1, 3):
      raise DataError(f"Channels {self.channels} is not allowed; allowed: 1 (grey) or 3 (RGB).")
    if self.resolution is not None and self.resolution < 1:
      # Binaries map --resolution=0 to None and check the flag themselves, naming it (cli/data_flags.py).
      raise DataError(f"Resolution {self.resolution} must be a positive image side, or None for the "
                      f"native size.")
    if self.seed < 0:
      raise DataError(f"Seed {self.seed} must be >= 0.")
    if isinstance(self.validation, str):
      if not self.validation or self.validation == "train":
        raise DataError(f"Validation split {self.validation!r} is not allowed; name a split other than "
                        f"'train', or give a count or a fraction in (0, 1).")
      return
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
  skipped: int = 0  # Unreadable or corrupt files skipped with `skip_corrupt`.
