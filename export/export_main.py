"""Exports a trained PC-NAS model for serving, checks every export against it, and times each one.

  .venv/bin/python -m export.export_main --model=run/model.keras --output_dir=run/export \
      --formats=saved_model,tflite,tflite_int8,onnx,backbone [--overwrite] [--batch=16]

The model's space, architecture and predicted latency come from `train_result.json` or
`search_result.json` next to it, from --search_result, or from --space/--width (and --arch, checked
against the model's layers). Parity images are the first --parity_images of the data set's test split;
int8 calibration images come from the validation carve-out of its training split. Figures are written to
<output_dir>/export_result.json; a parity failure exits non-zero with them.
"""

from pcnas_tf import console  # pylint: disable=g-bad-import-order

console.quiet_startup()  # before anything below imports TensorFlow

import json

from absl import flags

from export import export_lib
from export import spec as spec_lib
from pcnas_tf.data import data_config
from pcnas_tf.cli import app
from pcnas_tf.space import search_space as space_lib

_MODEL = flags.DEFINE_string("model", None, "The .keras model file to export (a training's "
                             "<work_dir>/model.keras).", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory for the exports: new, or existing with "
                                  "--overwrite.", required=True)
_FORMATS = flags.DEFINE_string("formats", ",".join(export_lib.DEFAULT_FORMATS),
                               f"Comma-separated formats, at least one of: {', '.join(export_lib.FORMATS)}.")
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace exports in an existing output directory.")
_BATCH = flags.DEFINE_integer("batch", 16, "Batch size (>= 1) for latency measurement and parity runs.",
                              lower_bound=1)
_SEARCH_RESULT = flags.DEFINE_string("search_result", None,
                                     "A search_result.json or train_result.json describing the model "
                                     "(default: one next to the model).")
_SPACE = flags.DEFINE_string("space", None, "Search space: small, large, macro, or a .json spec (overrides "
                             "the result file).")
_WIDTH = flags.DEFINE_float("width", 1.0, "Width multiplier (> 0) of --space.")
_ARCH = flags.DEFINE_string("arch", None, "Expected architecture (a compact string or comma-separated ops "
                            "of the space); an error if the model's differs.")
_DATASET = flags.DEFINE_string("dataset", data_config.FASHION_MNIST,
                               f"Data set of parity and calibration images: {data_config.FASHION_MNIST}, "
                               f"{data_config.IMAGE_FOLDER} or a tfds dataset prepared under --data_dir.")
_DATA_DIR = flags.DEFINE_string("data_dir", data_config.DEFAULT_DATA_DIR,
                                "tfds data directory, or the root of an image folder. Not empty.")
_PARITY_IMAGES = flags.DEFINE_integer("parity_images", 256, "Test images (>= 1) for the parity checks.",
                                      lower_bound=1)
_REPRESENTATIVE_IMAGES = flags.DEFINE_integer(
    "representative_images", 256, "Training-split images (>= 1) to calibrate int8 quantisation.",
    lower_bound=1)
_LATENCY_RUNS = flags.DEFINE_integer("latency_runs", 20, "Timed runs (>= 1) per format (min and median).",
                                     lower_bound=1)
_MIN_TOP1_AGREEMENT = flags.DEFINE_float(
    "min_top1_agreement", export_lib.ExportConfig.min_top1_agreement,
    "Share of parity images, in [0, 1], whose top class an int8 or fp16 export must keep.",
    lower_bound=0, upper_bound=1)


def main(argv) -> None:
  del argv
  config = export_lib.ExportConfig(output_dir=_OUTPUT_DIR.value,
                                   formats=export_lib.parse_formats(_FORMATS.value),
                                   overwrite=_OVERWRITE.value, batch=_BATCH.value,
                                   latency_runs=_LATENCY_RUNS.value,
                                   min_top1_agreement=_MIN_TOP1_AGREEMENT.value)
  # Checked before the model loads, so a forgotten --overwrite or a bad --space fails in a second.
  export_lib.check_output_dir(config.output_dir, config.overwrite)
  space = space_lib.get_space(_SPACE.value, _WIDTH.value) if _SPACE.value else None
  model = spec_lib.load_model(_MODEL.value)
  spec = spec_lib.resolve_spec(model, _SEARCH_RESULT.value or spec_lib.find_spec_file(_MODEL.value),
                               space, _ARCH.value)
  height, _, channels = spec.input_shape
  data = data_config.DataConfig(dataset=_DATASET.value, data_dir=_DATA_DIR.value, resolution=height,
                                channels=channels)
  images = export_lib.dataset_images(data, "test", _PARITY_IMAGES.value)
  representative = (export_lib.dataset_images(data, "validation", _REPRESENTATIVE_IMAGES.value)
                    if "tflite_int8" in config.formats else None)
  result = export_lib.run_export(model, spec, config, images, representative)
  for name, entry in result["formats"].items():
    print(name, json.dumps({key: entry[key] for key in ("parity", "latency") if key in entry}))


def run():
  """The console script (`pip install .`): as `python -m export.export_main`."""
  app.run_main(main)


if __name__ == "__main__":
  run()
