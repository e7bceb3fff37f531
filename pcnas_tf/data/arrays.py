"""In-memory images as a data source: NumPy arrays or a `tf.data.Dataset` of (image, label) pairs.

They are checked (one sentence per mistake, before anything is trained), converted to uint8
[N, H, W, C] with integer labels, and written once to a directory named after their content, which
`sources.load` reads as the dataset `arrays`:

  directory = arrays.write(root, {"train": arrays.checked(x, y)})
  splits = sources.load(DataConfig(dataset="arrays", data_dir=directory, resolution=16))

So a search on arrays is a search on files, resumable, and `search_main --dataset=arrays
--data_dir=DIR` repeats it. Pixels: integers 0..255; floats in [0, 1] (scaled by 255) or, when any
exceeds 1, in [0, 255]. Images of rank 3 are grey; 1, 3 or 4 channels (RGBA: the alpha is dropped).
"""

import dataclasses
import hashlib
import io
import os

import numpy as np

from pcnas_tf import files
from pcnas_tf.data import data_config

INDEX_FILE = "arrays.json"
CHANNELS = (1, 3, 4)
FORMAT = "pcnas_tf.arrays/1"


@dataclasses.dataclass(frozen=True)
class Split:
  """One split's images (uint8 [N, H, W, C]) and labels (int32 [N])."""
  images: np.ndarray
  labels: np.ndarray


def checked_images(x, what: str = "x") -> np.ndarray:
  """`x` as uint8 [N, H, W, C]; raises `DataError` for a rank, channel count, dtype or value not allowed."""
  images = np.asarray(x)
  if images.ndim not in (3, 4):
    raise data_config.DataError(
        f"{what} has shape {images.shape} (rank {images.ndim}); images need rank 3 (N, H, W) or 4 "
        f"(N, H, W, C).")
  if images.ndim == 3:
    images = images[..., None]
  if images.shape[-1] not in CHANNELS:
    raise data_config.DataError(
        f"{what} has {images.shape[-1]} channels (shape {images.shape}); allowed: 1 (grey), 3 (RGB) or 4 "
        f"(RGBA).")
  if min(images.shape[:3]) < 1:
    raise data_config.DataError(f"{what} has shape {images.shape}; it needs at least one image of at "
                                f"least 1x1 pixels.")
  return _as_uint8(images, what)


def _as_uint8(images: np.ndarray, what: str) -> np.ndarray:
  if images.dtype == np.uint8:
    return images
  if images.dtype == bool or not np.issubdtype(images.dtype, np.number) or np.iscomplexobj(images):
    raise data_config.DataError(f"{what} has dtype {images.dtype}; pixels must be integers 0..255 or "
                                f"floats in [0, 1] or [0, 255].")
  low, high = float(np.min(images)), float(np.max(images))
  if np.issubdtype(images.dtype, np.integer):
    if low < 0 or high > 255:
      raise data_config.DataError(f"{what} holds pixel values {low:g}..{high:g}; integer pixels must be "
                                  f"in 0..255.")
    return images.astype(np.uint8)
  if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
    raise data_config.DataError(f"{what} holds pixel values {low:g}..{high:g}; float pixels must be "
                                f"finite, in [0, 1] or [0, 255].")
  scale = 255.0 if high <= 1.0 else 1.0
  return np.round(images.astype(np.float64) * scale).astype(np.uint8)


def checked_labels(y, count: int, num_classes: int | None = None, what: str = "y") -> np.ndarray:
  """`y` as int32 [count]; raises `DataError` unless it holds one integer class in range per image."""
  labels = np.asarray(y)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if labels.ndim == 2 and labels.shape[0] == count:
    raise data_config.DataError(f"{what} has shape {labels.shape}, one-hot or scores per class; give one "
                                f"integer class per image (e.g. {what}.argmax(axis=1)).")
  if labels.ndim != 1 or len(labels) != count:
    raise data_config.DataError(f"{what} has shape {labels.shape} for {count} images; give one integer "
                                f"label per image, shape ({count},).")
  if labels.dtype == bool or not np.issubdtype(labels.dtype, np.number) or np.iscomplexobj(labels):
    raise data_config.DataError(f"{what} has dtype {labels.dtype}; labels must be integers 0, 1, ...")
  if not np.issubdtype(labels.dtype, np.integer):
    bad = labels[~np.isfinite(labels) | (labels != np.round(labels))]
    if len(bad):
      raise data_config.DataError(f"{what} holds {bad[0].item()!r}, which is not an integer class; labels must "
                                  f"be integers 0, 1, ...")
  if num_classes is not None:
    check_num_classes(num_classes)
  low, high = int(labels.min()), int(labels.max())
  allowed = "integers >= 0" if num_classes is None else f"0..{num_classes - 1}"
  if low < 0 or num_classes is not None and high >= num_classes:
    raise data_config.DataError(f"{what} holds label {low if low < 0 else high}, out of range; labels "
                                f"must be {allowed}.")
  return labels.astype(np.int32)


def check_num_classes(num_classes) -> None:
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
    raise data_config.DataError(f"Number of classes {num_classes!r} is not allowed; it must be an "
                                f"integer >= 2.")


def checked(x, y, num_classes: int | None = None, what: str = "x") -> Split:
  """The images `x` and labels `y` of one split, checked and converted (see `checked_images`)."""
  images = checked_images(x, what)
  return Split(images, checked_labels(y, len(images), num_classes, _labels_name(what)))


def _labels_name(what: str) -> str:
  return {"x": "y", "validation x": "validation y"}.get(what, f"the labels of {what}")


def classes_of(splits: dict, num_classes: int | None = None) -> int:
  """The number of classes: `num_classes`, or one more than the largest training label (at least 2)."""
  if num_classes is not None:
    return int(num_classes)
  found = int(splits["train"].labels.max()) + 1
  if found < 2:
    raise data_config.DataError("y holds only class 0; classification needs at least 2 classes (or pass "
                                "num_classes).")
  return found


# tf.data.Dataset input ------------------------------------------------------------------------------


def from_dataset(dataset, resolution: int | None = None, what: str = "x") -> Split:
  """The (image, label) pairs of a `tf.data.Dataset`, batched or not, as one checked `Split`.

  Images of different sizes are resized to `resolution` x `resolution` (antialiased), which must
  then be given.
  """
  images, labels = [], []
  batched = _is_batched(dataset, what)
  for image, label in dataset.as_numpy_iterator():
    images.extend(image if batched else [image])
    labels.extend(np.reshape(label, [-1]) if batched else [label])
  if not images:
    raise data_config.DataError(f"{what} (a tf.data.Dataset) yields no images.")
  shapes = {np.shape(image) for image in images}
  if len(shapes) > 1:
    images = _resized(images, shapes, resolution, what)
  return checked(np.stack(images), np.asarray(labels), what=what)


def _is_batched(dataset, what: str) -> bool:
  spec = dataset.element_spec
  if not isinstance(spec, tuple) or len(spec) != 2:
    raise data_config.DataError(f"{what} is a tf.data.Dataset of {spec}; give one of (image, label) "
                                f"pairs.")
  image_rank, label_rank = spec[0].shape.rank, spec[1].shape.rank
  return label_rank == 1 and image_rank in (3, 4)


def _resized(images, shapes, resolution, what):
  """Images of different sizes, each checked and resized to `resolution` (required) in uint8."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only for datasets: TensorFlow's already in)
  if resolution is None:
    sizes = ", ".join(sorted({"x".join(map(str, shape[:2])) for shape in shapes})[:3])
    raise data_config.DataError(f"{what} holds images of different sizes ({sizes}, ...); pass a "
                                f"resolution to resize them to.")
  resized = []
  for index, image in enumerate(images):
    pixels = checked_images(np.asarray(image)[None], f"image {index} of {what}")
    # The antialiased resize of `sources.resize` (which imports this module).
    side = (resolution, resolution)
    resized.append(np.clip(np.round(tf.image.resize(pixels, side, antialias=True).numpy()), 0, 255)
                   .astype(np.uint8)[0])
  if len({image.shape for image in resized}) > 1:
    raise data_config.DataError(f"{what} holds images with different channel counts; give all images "
                                f"the same.")
  return resized


# The directory ----------------------------------------------------------------------------------------


def digest(splits: dict, num_classes: int) -> str:
  """A short hash of the images, labels and classes of `splits` (name -> `Split`)."""
  hasher = hashlib.sha256(f"{FORMAT} {num_classes}".encode())
  for name in sorted(splits):
    for array in (splits[name].images, splits[name].labels):
      hasher.update(f"{name} {array.dtype} {array.shape}".encode())
      hasher.update(np.ascontiguousarray(array).data)
  return hasher.hexdigest()[:16]


def directory_of(root: str, splits: dict, num_classes: int) -> str:
  """Where `write` writes `splits` under `root`: a directory named after their digest."""
  return os.path.join(files.absolute(root), digest(splits, num_classes))


def write(root: str, splits: dict, num_classes: int) -> str:
  """Writes `splits` (name -> `Split`, "train" required) to `directory_of(root, ...)` and returns it.

  The same arrays are written once; the index is written last, so a directory without it (a crash
  part way) holds no arrays to `read` and is written afresh. Written in place, not renamed into place,
  as an object store cannot rename a directory.
  """
  directory = directory_of(root, splits, num_classes)
  if files.exists(os.path.join(directory, INDEX_FILE)):
    return directory
  files.remove(directory)  # an incomplete one, without its index
  files.make_dir(directory, "Data directory")
  for name, split in splits.items():
    _save(os.path.join(directory, f"{name}_images.npy"), split.images)
    _save(os.path.join(directory, f"{name}_labels.npy"), split.labels)
  files.write_json(os.path.join(directory, INDEX_FILE),
                   {"format": FORMAT, "num_classes": num_classes,
                    "splits": {name: len(split.labels) for name, split in splits.items()}})
  return directory


def _save(path: str, array: np.ndarray) -> None:
  buffer = io.BytesIO()
  np.save(buffer, array)
  files.write_bytes(path, buffer.getvalue())


def _load(path: str) -> np.ndarray:
  return np.load(io.BytesIO(files.read_bytes(path)))


def read(directory: str) -> tuple[dict, int]:
  """({split name: `Split`}, number of classes) of a directory `write` wrote."""
  index_path = os.path.join(directory, INDEX_FILE)
  if not files.isfile(index_path):
    raise data_config.DataError(f"Directory {directory} holds no arrays ({INDEX_FILE} is missing); give "
                                f"the directory the tuner wrote (arrays.write).")
  index = files.read_json(index_path, "arrays index", data_config.DataError)
  if index.get("format") != FORMAT:
    raise data_config.DataError(f"Arrays in {directory} have format {index.get('format')!r}; this "
                                f"version reads {FORMAT!r}: run the search on the arrays again.")
  splits = {name: Split(_load(os.path.join(directory, f"{name}_images.npy")),
                        _load(os.path.join(directory, f"{name}_labels.npy")))
            for name in index["splits"]}
  return splits, int(index["num_classes"])

