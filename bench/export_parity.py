"""Parity and latency of every CPU export format against the Keras model, on this machine.

Without --model, trains a fresh small model first: macro space (width 0.25), 32x32x3 Fashion-MNIST (grey
repeated to RGB), a few hundred steps, so that its predictions are confident and int8 top-1 agreement
measures quantisation rather than near-ties of a random network. Parity uses the first 256 test images;
int8 calibration uses 256 training images the model did not train on. Latency: batch 16, LiteRT and
onnxruntime on 1 thread, TensorFlow with its default threads; min and median of --runs.
The last line is one JSON object.

  .venv/bin/python -m bench.export_parity                      # about two minutes on 2 cores
  .venv/bin/python -m bench.export_parity --model run/model.keras --space macro --width 0.25
"""

import argparse
import json
import tempfile

import keras
import numpy as np
import tensorflow as tf

from export import export_lib
from export import spec as spec_lib
from pcnas_tf.data import data_config
from pcnas_tf.cli import app
from pcnas_tf import errors
from pcnas_tf.data import fashion_mnist
from pcnas_tf.nn import model as model_lib
from pcnas_tf.space import search_space as space_lib

ARCH = "12021120"  # A mix of all three macro operators.
FORMATS = ("saved_model", "tflite", "tflite_int8", "onnx", "backbone")


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--model", default=None, help=".keras model to export (default: train one)")
  parser.add_argument("--space", default="macro", help="space of --model (or of the fresh model)")
  parser.add_argument("--width", type=float, default=0.25, help="width multiplier of --space")
  parser.add_argument("--resolution", type=int, default=32)
  parser.add_argument("--train-images", type=int, default=8192, help="images the fresh model trains on")
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--batch", type=int, default=16, help="batch of the latency measurement")
  parser.add_argument("--runs", type=int, default=20, help="timed runs per format")
  return parser.parse_args(argv)


def fashion_mnist_images(split: str, start: int, count: int, input_shape) -> tuple[np.ndarray, np.ndarray]:
  """Images resized to `input_shape` and normalised as in training, with their labels."""
  images, labels = fashion_mnist.read_split(data_config.DEBIAN_FASHION_MNIST, split)
  images = tf.image.resize(images[start:start + count].astype(np.float32), input_shape[:2],
                           antialias=True)
  images = tf.repeat(images, input_shape[2], axis=-1) if input_shape[2] == 3 else images
  return (images / 127.5 - 1.0).numpy(), labels[start:start + count]


def train_fresh_model(space, input_shape, args, path: str) -> None:
  """Trains `ARCH` briefly on Fashion-MNIST and saves it to `path`."""
  keras.utils.set_random_seed(0)
  model = model_lib.build_model(space.parse_arch(ARCH), space, input_shape, 10)
  model.compile(keras.optimizers.Adam(3e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
  images, labels = fashion_mnist_images("train", 0, args.train_images, input_shape)
  history = model.fit(images, labels, batch_size=64, epochs=args.epochs, verbose=0)
  print(f"trained {model.name}: train accuracy {history.history['accuracy'][-1]:.3f}")
  model.save(path)


def print_table(result: dict) -> None:
  print(f"{'format':<14}{'max_abs':>12}{'top1_agree':>12}{'min_ms':>10}{'median_ms':>11}")
  for name, entry in result["formats"].items():
    parity = entry.get("parity", {})
    print(f"{name:<14}{parity.get('max_abs', float('nan')):>12.3g}"
          f"{parity.get('top1_agreement', float('nan')):>12.4f}"
          f"{entry['latency']['min_ms']:>10.3f}{entry['latency']['median_ms']:>11.3f}")


def summary(result: dict, args) -> dict:
  formats = result["formats"]
  return {"saved_model_max_abs": formats["saved_model"]["parity"]["max_abs"],
          "tflite_max_abs": formats["tflite"]["parity"]["max_abs"],
          "onnx_max_abs": formats["onnx"]["parity"]["max_abs"],
          "int8_top1_agreement": formats["tflite_int8"]["parity"]["top1_agreement"],
          "int8_max_abs": formats["tflite_int8"]["parity"]["max_abs"],
          "latency_median_ms": {name: entry["latency"]["median_ms"] for name, entry in formats.items()},
          "latency_min_ms": {name: entry["latency"]["min_ms"] for name, entry in formats.items()},
          "batch": args.batch, "parity_images": result["parity_images"], "model": result["model"],
          "input_shape": result["input_shape"]}


def main(argv=None) -> None:
  args = parse_args(argv)
  space = space_lib.get_space(args.space, args.width)
  with tempfile.TemporaryDirectory() as folder:
    path = args.model
    if path is None:
      path = f"{folder}/model.keras"
      train_fresh_model(space, (args.resolution, args.resolution, 3), args, path)
    model = spec_lib.load_model(path)
    spec = spec_lib.resolve_spec(model, None, space)
    images, _ = fashion_mnist_images("test", 0, 256, spec.input_shape)
    representative, _ = fashion_mnist_images("train", args.train_images, 256, spec.input_shape)
    config = export_lib.ExportConfig(output_dir=f"{folder}/export", formats=FORMATS, batch=args.batch,
                                     latency_runs=args.runs)
    result = export_lib.run_export(model, spec, config, images, representative)
  print_table(result)
  print(json.dumps(summary(result, args)))


if __name__ == "__main__":
  try:
    main()
  except errors.UserError as error:
    app.report(error)
    raise SystemExit(2) from error
