"""Fashion-MNIST as a tfds dataset, prepared offline from Debian's IDX files.

Debian's `dataset-fashion-mnist` installs the original IDX files, re-gzipped, in
/usr/share/datasets/fashion-mnist/. tfds' own `fashion_mnist` builder downloads and checksums the upstream
archives, so it rejects these; `FashionMnistLocal` is a small builder whose preparation reads the local
files instead and downloads nothing. After `prepare` (cached in `data_dir`) it is an ordinary tfds dataset,
`fashion_mnist_local`, with `train` (60,000) and `test` (10,000) splits of 28x28x1 images and 10 classes.
"""

import contextlib
import gzip
import io
import os

import numpy as np
from absl import logging
from PIL import Image
import tensorflow_datasets as tfds

from pcnas_tf import console
from pcnas_tf.data import data_config

CLASS_NAMES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
               "ankle boot")
IMAGE_SIDE = 28
# Split -> (images file, labels file), as named by the upstream release and Debian.
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_IMAGES_MAGIC, _LABELS_MAGIC = 0x803, 0x801  # IDX: unsigned bytes, 3 or 1 dimensions.


def read_idx(path: str, magic: int) -> np.ndarray:
  """Reads a gzipped IDX file of unsigned bytes into an array of its declared shape."""
  try:
    with gzip.open(path, "rb") as f:
      content = f.read()
  except OSError as error:
    raise data_config.DataError(f"Cannot read IDX file {path}: {error}; install Debian's "
                         f"dataset-fashion-mnist (`make setup`) or set the IDX directory.") from error
  dims = magic & 0xFF
  header = 4 + 4 * dims
  if len(content) < header or int.from_bytes(content[:4], "big") != magic:
    raise data_config.DataError(f"File {path} is not an IDX file of unsigned bytes with {dims} dimension(s).")
  shape = tuple(int.from_bytes(content[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
  values = np.frombuffer(content, np.uint8, offset=header)
  if values.size != np.prod(shape):
    raise data_config.DataError(f"IDX file {path} declares shape {shape} but holds {values.size} values.")
  return values.reshape(shape)


def read_split(idx_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """The (images [N, 28, 28, 1], labels [N]) of one split, checked for shape and label range."""
  images_file, labels_file = (os.path.join(idx_dir, name) for name in FILES[split])
  images, labels = read_idx(images_file, _IMAGES_MAGIC), read_idx(labels_file, _LABELS_MAGIC)
  if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or len(images) != len(labels):
    raise data_config.DataError(f"Fashion-MNIST {split} files in {idx_dir} hold {images.shape} images and "
                         f"{len(labels)} labels; expected N x {IMAGE_SIDE} x {IMAGE_SIDE} and N labels.")
  if labels.max(initial=0) >= len(CLASS_NAMES):
    raise data_config.DataError(f"Label {labels.max()} in {labels_file} is outside the class range "
                         f"0..{len(CLASS_NAMES) - 1}.")
  return images[..., None], labels


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST read from local IDX files (`idx_dir`), never downloaded."""

  VERSION = tfds.core.Version("1.0.0")

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # tfds looks for a checksums file beside the builder's code, which needs the `importlib_resources`
    # backport; this builder downloads nothing, so there is nothing to look for.
    return None

  def __init__(self, *, idx_dir: str = data_config.DEBIAN_FASHION_MNIST, **kwargs):
    self.idx_dir = idx_dir
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(IMAGE_SIDE, IMAGE_SIDE, 1)),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES)}),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist")

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split) for split in FILES}

  def _generate_examples(self, split):
    images, labels = read_split(self.idx_dir, split)
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": _png(image), "label": int(label)}


def _png(image: np.ndarray) -> io.BytesIO:
  # PIL encodes about 3x faster than tfds' own encoder, which runs a TensorFlow op per image.
  encoded = io.BytesIO()
  Image.fromarray(image[..., 0]).save(encoded, format="PNG", compress_level=1)
  encoded.seek(0)
  return encoded


def prepare(data_dir: str, idx_dir: str = data_config.DEBIAN_FASHION_MNIST) -> FashionMnistLocal:
  """Returns the builder, preparing it into `data_dir` first unless that was done before."""
  try:
    with _tfds_quiet():
      builder = FashionMnistLocal(data_dir=data_dir, idx_dir=idx_dir)
      prepared = builder.is_prepared()
    if not prepared:
      for split in FILES:  # Fail on missing or bad files before tfds starts writing.
        read_split(idx_dir, split)
      print(f"Preparing Fashion-MNIST from {idx_dir} into {data_dir} (once; about half a minute).",
            flush=True)
      with _tfds_quiet():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  except OSError as error:
    # Two processes preparing one data directory at once (the shards of a ground-truth build): the
    # one that renames its copy into place second fails; the data is the same, so use the first's.
    with _tfds_quiet():
      builder = FashionMnistLocal(data_dir=data_dir, idx_dir=idx_dir)
      if builder.is_prepared():
        return builder
    raise data_config.DataError(f"Cannot prepare Fashion-MNIST in data directory {data_dir}: {error}; give a "
                         f"writable data directory.") from error
  return builder


@contextlib.contextmanager
def _tfds_quiet():
  """tfds' messages for a local build ask nothing of the user and mislead ("Downloading and preparing
  dataset Unknown size", "Variant folder ... has no dataset_info.json" before the first build, and
  its progress bars): held back unless --verbose."""
  if console.is_verbose():
    yield
    return
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.display_progress_bar(True)  # tfds' default; it has no getter to restore from
    logging.set_verbosity(verbosity)
