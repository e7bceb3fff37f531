"""Tests of the export modules and the export binary, on a tiny macro-space model trained on Fashion-MNIST.

The model is trained for a few hundred steps so its predictions are confident and varied: on a random
model most probabilities sit near 1/10 and top-1 agreement of int8 would measure rounding noise.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from export import export_errors
from export import export_lib
from export import predictors
from export import spec as spec_lib
from export import writers
from pcnas_tf.data import data_config
from pcnas_tf.data import fashion_mnist
from pcnas_tf.nn import model as model_lib
from pcnas_tf.space import search_space as space_lib
from tests import helpers as testing

SPACE = space_lib.macro_space(0.125)
ARCH = ("MBConv_3_3", "Identity", "MBConv_6_5", "Identity", "MBConv_3_3", "MBConv_6_5", "Identity",
        "MBConv_3_3")
INPUT_SHAPE = (16, 16, 1)
FAST_FORMATS = ("saved_model", "tflite", "tflite_int8", "onnx", "backbone")
PYTHON = sys.executable


def _images(split, start, count):
  images, labels = fashion_mnist.read_split(data_config.DEBIAN_FASHION_MNIST, split)
  images = tf.image.resize(images[start:start + count].astype(np.float32), INPUT_SHAPE[:2],
                           antialias=True)
  return (images / 127.5 - 1.0).numpy(), labels[start:start + count]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A trained model saved as .keras, with a train_result.json next to it."""
  keras.utils.set_random_seed(0)
  folder = tmp_path_factory.mktemp("run")
  model = model_lib.build_model(ARCH, SPACE, INPUT_SHAPE, 10)
  model.compile(keras.optimizers.Adam(3e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  images, labels = _images("train", 0, 4096)
  model.fit(images, labels, batch_size=64, epochs=2, verbose=0)
  model.save(folder / "model.keras")
  np.save(folder / "logits.npy", model(_images("test", 0, 8)[0]))
  with open(folder / "train_result.json", "w") as f:
    json.dump({"space": SPACE.to_json(), "arch": list(ARCH), "input_shape": list(INPUT_SHAPE),
               "num_classes": 10, "predicted_latency_ms": 1.5}, f)
  return folder


@pytest.fixture(scope="module")
def loaded(workdir):
  model = spec_lib.load_model(str(workdir / "model.keras"))
  return model, spec_lib.resolve_spec(model, spec_lib.find_spec_file(str(workdir / "model.keras")))


@pytest.fixture(scope="module")
def parity_images():
  return _images("test", 0, 256)[0]


@pytest.fixture(scope="module")
def exported(workdir, loaded, parity_images):
  """One export of every CPU format, shared by the tests that inspect it."""
  model, spec = loaded
  # The model is trained for 2 epochs, so near-ties are common: int8 agreement measured 0.977-0.99
  # here. 0.95 still catches a broken quantisation (chance agreement is about 0.1).
  config = export_lib.ExportConfig(output_dir=str(workdir / "export"), formats=FAST_FORMATS,
                                   latency_runs=2, warmup_runs=1, min_top1_agreement=0.95)
  representative = _images("train", 4096, 256)[0]
  return config, export_lib.run_export(model, spec, config, parity_images, representative)


# Loading and checking the model ---------------------------------------------------------------------


def test_load_model_restores_the_trained_weights(workdir, parity_images):
  model = spec_lib.load_model(str(workdir / "model.keras"))
  np.testing.assert_allclose(model(parity_images[:8]), np.load(workdir / "logits.npy"), atol=1e-5)
  assert spec_lib.model_arch(model) == ARCH


def test_loaded_model_is_the_trained_one(loaded, parity_images):
  model, _ = loaded
  # A trained model separates the classes; an untrained one would sit near 10% accuracy.
  _, labels = _images("test", 0, 256)
  accuracy = np.mean(np.argmax(model(parity_images), -1) == labels)
  assert accuracy > 0.6


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"not a zip", "not a Keras .keras archive"),
])
def test_load_model_rejects_bad_files(tmp_path, content, message):
  path = tmp_path / "model.keras"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(export_errors.ExportError, match=message):
    spec_lib.load_model(str(path))


def test_load_model_of_a_directory_says_a_keras_file_is_expected(tmp_path):
  (tmp_path / "run").mkdir()
  with pytest.raises(export_errors.ExportError, match=r"^Model file '.*/run' is a directory; expected a "
                     r"\.keras file \(the model\.keras a training writes\)\.$"):
    spec_lib.load_model(str(tmp_path / "run"))
  # A training's work directory: the message names the model in it.
  (tmp_path / "run" / "model.keras").write_bytes(b"")
  with pytest.raises(export_errors.ExportError, match=r"is a directory; expected a \.keras file, such as "
                     r"'.*/run/model\.keras'\.$"):
    spec_lib.load_model(str(tmp_path / "run"))


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_load_model_of_truncated_weights_says_damaged(tmp_path, keep):
  path = testing.write_truncated_keras(tmp_path / "model.keras", keep)
  with pytest.raises(export_errors.ExportError, match=r"^Model file '.*model\.keras' is damaged or "
                     r"incomplete \(its weights cannot be read\); export or train it again\.$"):
    spec_lib.load_model(path)


def test_load_model_rejects_a_non_pcnas_model(tmp_path):
  other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
  other.save(tmp_path / "other.keras")
  with pytest.raises(export_errors.ExportError, match="is not a PC-NAS model"):
    spec_lib.load_model(str(tmp_path / "other.keras"))


def test_resolve_spec_reads_train_result(loaded):
  _, spec = loaded
  assert (spec.arch, spec.input_shape, spec.num_classes) == (ARCH, INPUT_SHAPE, 10)
  assert spec.space == SPACE and spec.predicted_latency_ms == 1.5


def test_resolve_spec_works_from_flags_alone(loaded):
  model, _ = loaded
  spec = spec_lib.resolve_spec(model, None, SPACE, SPACE.arch_to_string(ARCH))
  assert spec.arch == ARCH and spec.predicted_latency_ms is None


def test_resolve_spec_needs_a_space(loaded):
  with pytest.raises(export_errors.ExportError, match="No search space is known"):
    spec_lib.resolve_spec(loaded[0])


def test_resolve_spec_rejects_a_different_arch(loaded):
  other = ("Identity",) + ARCH[1:]
  with pytest.raises(export_errors.ExportError, match="does not match the model's layers"):
    spec_lib.resolve_spec(loaded[0], None, SPACE, other)


def test_resolve_spec_rejects_an_arch_not_in_the_space(loaded):
  with pytest.raises(space_lib.SpaceError, match="not allowed at layer 0"):
    spec_lib.resolve_spec(loaded[0], None, SPACE, ("NConv_1_3",) + ARCH[1:])


def test_resolve_spec_rejects_a_model_of_another_width(loaded):
  with pytest.raises(export_errors.ExportError, match="does not match this space or width"):
    spec_lib.resolve_spec(loaded[0], None, space_lib.macro_space(0.5))


def test_resolve_spec_rejects_a_model_of_another_space(loaded):
  with pytest.raises(export_errors.ExportError, match="was not built in this space"):
    spec_lib.resolve_spec(loaded[0], None, space_lib.small_space(0.25))


def test_resolve_spec_rejects_a_train_result_of_another_model(loaded, tmp_path):
  path = tmp_path / "train_result.json"
  path.write_text(json.dumps({"space": SPACE.to_json(), "input_shape": [32, 32, 3], "num_classes": 10}))
  with pytest.raises(export_errors.ExportError, match=r"gives input_shape \[32, 32, 3\]; the model has"):
    spec_lib.resolve_spec(loaded[0], str(path))


def _search_result(tmp_path, content):
  path = tmp_path / "search_result.json"
  path.write_text(json.dumps({"space": SPACE.to_json(), **content}))
  return str(path)


def test_search_result_gives_the_pool_members_latency(loaded, tmp_path):
  pool = [{"arch": "00000000", "predicted_latency_ms": 1.0},
          {"arch": SPACE.arch_to_string(ARCH), "predicted_latency_ms": 2.5}]
  spec = spec_lib.resolve_spec(loaded[0], _search_result(tmp_path, {"final_pool": pool}))
  assert spec.predicted_latency_ms == 2.5


@pytest.mark.parametrize("content, message", [
    ({}, "has no final pool"),
    ({"final_pool": []}, "has no final pool"),
    ({"final_pool": ["00000000"]}, "is not in the final pool"),
])
def test_search_result_must_hold_the_model(loaded, tmp_path, content, message):
  with pytest.raises(export_errors.ExportError, match=message):
    spec_lib.resolve_spec(loaded[0], _search_result(tmp_path, content))


# Flags-level checks ---------------------------------------------------------------------------------


def test_parse_formats_rejects_an_unknown_format():
  assert export_lib.parse_formats("onnx, tflite,onnx") == ("onnx", "tflite")
  with pytest.raises(export_errors.ExportError, match="Unknown export format pytorch; allowed"):
    export_lib.parse_formats("onnx,pytorch")


@pytest.mark.parametrize("agreement", [1.5, -0.1, float("nan")])
def test_min_top1_agreement_must_be_a_share(agreement):
  with pytest.raises(export_errors.ExportError, match=rf"^Minimum top-1 agreement {agreement} "
                     r"\(--min_top1_agreement\) must be in \[0, 1\]\.$"):
    export_lib.ExportConfig(output_dir="unused", min_top1_agreement=agreement)


def test_existing_output_dir_needs_overwrite(tmp_path):
  with pytest.raises(export_errors.ExportError, match="already exists; pass --overwrite"):
    export_lib.prepare_output_dir(str(tmp_path), overwrite=False)
  (tmp_path / "keep.txt").write_text("mine")
  export_lib.prepare_output_dir(str(tmp_path), overwrite=True)
  assert (tmp_path / "keep.txt").exists()  # --overwrite replaces exports, never the user's other files.


def test_output_dir_that_cannot_be_created_is_refused_before_anything_is_written(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(export_errors.ExportError, match=r"Cannot create output directory .* is a file, "
                     r"not a directory; choose another --output_dir\."):
    export_lib.check_output_dir(str(tmp_path / "file" / "export"), overwrite=False)
  export_lib.check_output_dir(str(tmp_path / "new" / "export"), overwrite=False)
  assert not (tmp_path / "new").exists()


def test_int8_needs_a_representative_dataset(loaded, parity_images, tmp_path):
  config = export_lib.ExportConfig(output_dir=str(tmp_path / "out"), formats=("tflite_int8",))
  with pytest.raises(export_errors.ExportError, match="needs a representative dataset"):
    export_lib.run_export(*loaded, config, parity_images)
  assert not (tmp_path / "out").exists()


def test_stage_ends_are_before_each_stride_two_layer():
  assert writers.stage_ends(SPACE) == [1, 4, 7]
  assert writers.stage_ends(space_lib.small_space()) == [3, 7, 15, 20]


# The exports ----------------------------------------------------------------------------------------


def test_float_exports_match_keras(exported):
  _, result = exported
  for name in ("saved_model", "tflite", "onnx"):
    entry = result["formats"][name]
    assert entry["parity_ok"] and entry["parity"]["images"] == 256
    assert entry["parity"]["max_abs"] <= 1e-4, name


def test_int8_export_agrees_on_top1(exported):
  figures = exported[1]["formats"]["tflite_int8"]["parity"]
  assert figures["top1_agreement"] >= exported[0].min_top1_agreement
  assert figures["max_abs"] > 0  # It really is quantised.


def test_result_file_records_latency_next_to_prediction(exported):
  config, result = exported
  with open(os.path.join(config.output_dir, export_lib.RESULT_FILE)) as f:
    assert json.load(f) == json.loads(json.dumps(result))
  assert set(result["formats"]) == {"keras", *FAST_FORMATS}
  for name in FAST_FORMATS:
    entry = result["formats"][name]
    assert entry["latency"]["batch"] == 16 and 0 < entry["latency"]["min_ms"] <= entry["latency"][
        "median_ms"]
    assert entry["predicted_latency_ms"] == 1.5
    assert os.path.exists(os.path.join(config.output_dir, entry["path"]))


def test_saved_model_serves_probabilities_and_classes(exported, parity_images):
  config, _ = exported
  loaded = tf.saved_model.load(os.path.join(config.output_dir, "saved_model"))
  outputs = loaded.signatures["serving_default"](images=tf.constant(parity_images[:8]))
  probabilities, classes = outputs["probabilities"].numpy(), outputs["classes"].numpy()
  assert probabilities.shape == (8, 10) and classes.shape == (8, 5)
  np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)
  np.testing.assert_array_equal(classes[:, 0], probabilities.argmax(-1))


def test_saved_model_decodes_encoded_images(exported, parity_images):
  config, _ = exported
  loaded = tf.saved_model.load(os.path.join(config.output_dir, "saved_model"))
  pixels = np.round((parity_images[:4] + 1) * 127.5).astype(np.uint8)  # Exactly representable.
  encoded = tf.stack([tf.io.encode_png(image) for image in pixels])
  from_bytes = loaded.signatures["encoded_images"](image_bytes=encoded)["probabilities"]
  from_floats = loaded.signatures["serving_default"](
      images=tf.constant(pixels / 127.5 - 1.0, tf.float32))["probabilities"]
  np.testing.assert_allclose(from_bytes, from_floats, atol=1e-5)


def test_saved_model_cli_lists_the_signatures(exported):
  config, _ = exported
  cli = os.path.join(os.path.dirname(PYTHON), "saved_model_cli")
  shown = subprocess.run([cli, "show", "--all", "--dir", os.path.join(config.output_dir, "saved_model")],
                         capture_output=True, text=True, check=True).stdout
  serving = shown.split("signature_def['serving_default']")[1].split("signature_def[")[0]
  assert "inputs['images'] tensor_info:" in serving and "shape: (-1, 16, 16, 1)" in serving
  assert "outputs['probabilities']" in serving and "outputs['classes']" in serving
  assert "signature_def['encoded_images']" in shown and "inputs['image_bytes']" in shown


def test_backbone_returns_named_stage_features(exported, loaded, parity_images):
  config, result = exported
  model, _ = loaded
  assert result["formats"]["backbone"]["outputs"] == {
      "stride_2": [8, 8, 8], "stride_4": [4, 4, 16], "stride_8": [2, 2, 32]}
  served = tf.saved_model.load(os.path.join(config.output_dir, "backbone_saved_model")).signatures[
      "serving_default"](images=tf.constant(parity_images[:4]))
  stage_end = keras.Model(model.input, model.get_layer("layer_04_MBConv_3_3").output)
  np.testing.assert_allclose(served["stride_4"], stage_end(parity_images[:4]), atol=1e-5)
  backbone = spec_lib.load_keras_archive(os.path.join(config.output_dir, "backbone.keras"))
  np.testing.assert_allclose(backbone(parity_images[:4])["stride_8"], served["stride_8"], atol=1e-5)


def test_parity_failure_fails_the_export_with_figures(loaded, parity_images, tmp_path, monkeypatch):
  honest = predictors.tflite_predictor
  monkeypatch.setattr(predictors, "tflite_predictor",
                      lambda path: lambda images: honest(path)(images) + 1e-3)
  config = export_lib.ExportConfig(output_dir=str(tmp_path / "out"), formats=("tflite",),
                                   latency_runs=1, warmup_runs=0)
  with pytest.raises(export_lib.ParityError, match=r"tflite: max abs difference 0\.001 > 0\.0001"):
    export_lib.run_export(*loaded, config, parity_images[:32])
  with open(tmp_path / "out" / export_lib.RESULT_FILE) as f:
    assert json.load(f)["formats"]["tflite"]["parity_ok"] is False


def test_tensorrt_without_a_gpu_is_a_clear_error(loaded, parity_images, tmp_path):
  try:
    writers.tensorrt_route()
  except export_errors.ExportError:
    config = export_lib.ExportConfig(output_dir=str(tmp_path / "out"), formats=("tensorrt",))
    with pytest.raises(export_errors.ExportError, match="TensorRT export needs an NVIDIA GPU"):
      export_lib.run_export(*loaded, config, parity_images)
    return
  pytest.skip("This machine has a GPU with TensorRT; the no-GPU error cannot happen here.")


def test_tensorrt_export_matches_keras(loaded, parity_images, tmp_path):
  try:
    writers.tensorrt_route()
  except export_errors.ExportError as error:
    pytest.skip(f"TensorRT export cannot run here: {error}")
  config = export_lib.ExportConfig(output_dir=str(tmp_path / "out"), formats=("tensorrt",),
                                   latency_runs=2, warmup_runs=1)
  result = export_lib.run_export(*loaded, config, parity_images)
  assert result["formats"]["tensorrt_fp32"]["parity"]["max_abs"] <= 1e-4
  assert result["formats"]["tensorrt_fp16"]["parity"]["top1_agreement"] >= 0.98


# The binary -----------------------------------------------------------------------------------------


def _run_cli(*args):
  return subprocess.run([PYTHON, "-m", "export.export_main", *args], capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.parametrize("case, message", [
    ("unknown_format", "Unknown export format pytorch; allowed: saved_model"),
    ("existing_dir", "already exists; pass --overwrite"),
    ("missing_model", "does not exist."),
    ("not_a_model", "is not a Keras .keras archive"),
    ("other_arch", "does not match the model's layers"),
])
def test_cli_bad_input_is_one_sentence_and_exit_2(workdir, tmp_path, case, message):
  model, out = str(workdir / "model.keras"), str(tmp_path / "out")
  (tmp_path / "junk.keras").write_text("junk")
  args = {"unknown_format": ["--formats=onnx,pytorch"],
          "existing_dir": [f"--output_dir={tmp_path}"],
          "missing_model": [f"--model={tmp_path / 'none.keras'}"],
          "not_a_model": [f"--model={tmp_path / 'junk.keras'}"],
          "other_arch": ["--arch=00000000"]}[case]
  completed = _run_cli(f"--model={model}", f"--output_dir={out}", *args)
  assert completed.returncode == 2
  error_lines = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
  assert len(error_lines) == 1 and message in error_lines[0], completed.stderr[-2000:]
  assert "Traceback" not in completed.stderr


@pytest.mark.slow
def test_cli_exports_with_fashion_mnist(workdir, tmp_path):
  out = tmp_path / "out"
  completed = _run_cli(f"--model={workdir / 'model.keras'}", f"--output_dir={out}",
                       "--formats=saved_model,tflite_int8", "--latency_runs=2",
                       "--min_top1_agreement=0.95")  # see `exported`
  assert completed.returncode == 0, completed.stderr[-2000:]
  result = json.loads((out / export_lib.RESULT_FILE).read_text())
  assert result["formats"]["saved_model"]["parity"]["images"] == 256
  assert result["formats"]["tflite_int8"]["parity"]["top1_agreement"] >= 0.95
