"""Tiny real data and tiny spaces shared by the tests (not used by the tool itself)."""

import gzip
import json
import os

import numpy as np

from pcnas_tf import data
from pcnas_tf import fashion_mnist
from pcnas_tf import space as space_lib


def write_idx(path, array):
  """Writes `array` as a gzipped IDX file like Debian's."""
  magic = 0x800 + array.ndim
  header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_slice(directory, num_train, num_test, labels_offset=0):
  """The first images of each real Fashion-MNIST split, as IDX files; returns the train images."""
  os.makedirs(directory, exist_ok=True)
  train_images = None
  for split, count in (("train", num_train), ("test", num_test)):
    images, labels = fashion_mnist.read_split(data.DEBIAN_FASHION_MNIST, split)
    images_file, labels_file = fashion_mnist.FILES[split]
    write_idx(os.path.join(directory, images_file), images[:count, ..., 0])
    write_idx(os.path.join(directory, labels_file), labels[:count] + labels_offset)
    train_images = images[:num_train] if split == "train" else train_images
  return train_images


def tiny_fashion(root, num_train=600, num_test=100, **config):
  """A prepared slice of Fashion-MNIST under `root`, and its `DataConfig` (extra fields: `config`)."""
  write_fashion_slice(os.path.join(root, "idx"), num_train, num_test)
  config = data.DataConfig(data_dir=os.path.join(root, "tfds"), idx_dir=os.path.join(root, "idx"),
                           **config)
  fashion_mnist.prepare(config.data_dir, config.idx_dir)
  return config


def tiny_space():
  """Three mixops of two or three operators on 8-16 channels: a supergraph that traces in seconds."""
  choices = ("Identity", "MBConv_3_3", "MBConv_6_5")
  layers = (space_lib.LayerSpec(8, 1, choices), space_lib.LayerSpec(16, 2, choices),
            space_lib.LayerSpec(16, 1, choices[:2]))
  return space_lib.SearchSpace("tiny", 8, 1, None, layers, 16, "relu")


def tiny_search_config(root):
  """A search config under `root` that finishes in seconds: 3 mixops, 8x8 images, a few steps."""
  from pcnas_tf import search_lib  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
  space_path = os.path.join(root, "tiny_space.json")
  with open(space_path, "w") as f:
    json.dump(tiny_space().to_json(), f)
  data_config = tiny_fashion(str(root), resolution=8, validation=128, deterministic=True)
  return search_lib.SearchConfig(
      space=space_path, pool_size=2, num_samples=3, warmup_epochs=1, interval_epochs=1,
      steps_per_epoch=2, batch_size=16, constraint="flops", budget="0.6", eval_batch_size=32,
      eval_batches=2, strategy="one_device", checkpoint_every=1, data=data_config)
