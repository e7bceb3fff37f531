"""Tests of `PCNASTuner` on 200 real Fashion-MNIST images in memory, a tiny space and a few steps."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import pcnas_tf
from pcnas_tf import errors
from pcnas_tf.data import batches as batches_lib
from pcnas_tf.data import data_config
from pcnas_tf.data import fashion_mnist
from pcnas_tf.data import sources as data_sources
from pcnas_tf.nn import supergraph as supergraph_lib
from pcnas_tf.training import checkpoint
from pcnas_tf.training import supergraph_trainer as trainer_lib
from tests import helpers as testing

NUM_IMAGES = 200
SPACE = testing.tiny_space()
# The search of tests/helpers.tiny_search_config, as keywords.
SETTINGS = dict(constraint="flops", budget="0.6", pool_size=2, num_samples=3, warmup_epochs=1,
                interval_epochs=1, steps_per_epoch=2, batch_size=16, eval_batch_size=32, eval_batches=2,
                strategy="one_device", checkpoint_every=1)
SEARCH = dict(validation_split=64, resolution=8, verbose=0)


@pytest.fixture(scope="module")
def images():
  """(images [N, 28, 28], labels): the first real Fashion-MNIST training images."""
  if not os.path.exists(data_config.DEBIAN_FASHION_MNIST):
    pytest.skip("Debian's dataset-fashion-mnist is not installed (`make setup` installs it).")
  x, y = fashion_mnist.read_split(data_config.DEBIAN_FASHION_MNIST, "train")
  return x[:NUM_IMAGES, ..., 0], y[:NUM_IMAGES].astype(np.int64)


def make_tuner(directory, **changes):
  return pcnas_tf.PCNASTuner(**{"space": SPACE, **SETTINGS, "directory": str(directory),
                                "project_name": "search", **changes})


@pytest.fixture(scope="module")
def searched(images, tmp_path_factory):
  """A tuner that searched the images, uninterrupted."""
  tuner = make_tuner(tmp_path_factory.mktemp("searched"))
  tuner.search(*images, **SEARCH)
  return tuner


def as_text(value) -> str:
  """`value` as JSON text: tuples and lists alike, and NaN potentials (no feasible completion) equal."""
  return json.dumps(value, sort_keys=True)


def outcome(result, losses=True) -> str:
  """What two searches must share to be the same search: the pools, every potential, every path
  trained, and (unless an epoch was resumed mid-way, whose mean covers the steps after it) the losses."""
  return as_text({"pool": [(m["arch_string"], m["potential"]) for m in result["final_pool"]],
                  "intervals": [(r["candidates"], r["potentials"]) for r in result["intervals"]],
                  "paths": result["paths_digest"],
                  "losses": [entry["loss"] for entry in result["log"]] if losses else None})


# The search -----------------------------------------------------------------------------------------


def image_folder_order(root):
  """The order in which tfds.ImageFolder reads root/train (files named by their index)."""
  dataset = tfds.ImageFolder(str(root)).as_dataset(split="train", shuffle_files=False)
  return [int(os.path.basename(example["image/filename"].numpy().decode())[:-4]) for example in dataset]


@pytest.mark.slow
def test_the_tuner_on_arrays_searches_as_search_main_on_an_image_folder_of_them(images, tmp_path):
  x, y = images
  for index, (image, label) in enumerate(zip(x, y)):
    path = tmp_path / "folder" / "train" / str(label) / f"{index:04d}.png"
    os.makedirs(path.parent, exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(image[..., None]))
  order = image_folder_order(tmp_path / "folder")
  tuner = make_tuner(tmp_path)
  tuner.search(x[order], y[order], **SEARCH)
  space_file = tmp_path / "space.json"
  space_file.write_text(json.dumps(SPACE.to_json()))
  flags = [f"--{name}={value}" for name, value in SETTINGS.items()]
  code, last, stderr = testing.run_binary(
      "pcnas_tf.search_main", f"--space={space_file}", *flags, "--dataset=image_folder",
      f"--data_dir={tmp_path / 'folder'}", "--resolution=8", "--channels=1", "--validation=64",
      f"--work_dir={tmp_path / 'binary'}", "--noprogress")
  assert code == 0, stderr
  binary = testing.read_json(tmp_path / "binary" / "search_result.json")
  assert outcome(tuner.result) == outcome(binary)
  assert tuner.result["constraint"] == binary["constraint"]
  assert tuner.result["input_shape"] == binary["input_shape"] == [8, 8, 1]


def test_the_result_the_pictures_and_the_summary(searched, capsys):
  result = searched.result
  assert as_text(result) == as_text(testing.read_json(searched.result_path))
  assert result["space"] == SPACE.to_json() and len(result["intervals"]) == SPACE.num_layers
  assert all(m["predicted_flops"] <= result["constraint"]["budget"] for m in result["final_pool"])
  assert min(searched.search_picture.size) > 100 and min(searched.architecture_picture.size) > 100
  searched.results_summary()
  printed = capsys.readouterr().out
  positions = [printed.index(f"{m['arch_string']}: {', '.join(m['arch'])}") for m in result["final_pool"]]
  assert positions == sorted(positions) and f"Results in {searched.project_dir}" in printed


def test_the_best_hyperparameters_and_models_are_the_final_pool_with_the_supergraphs_weights(
    searched, images):
  pool = searched.result["final_pool"]
  best = searched.get_best_hyperparameters(5)
  assert [hp.values["arch"] for hp in best] == [m["arch_string"] for m in pool]
  assert [searched.hypermodel.arch(hp) for hp in best] == [tuple(m["arch"]) for m in pool]
  models = searched.get_best_models(2)
  inputs = searched.preprocess(images[0][:32])
  assert inputs.shape == (32, 8, 8, 1) and -1 <= inputs.min() < inputs.max() <= 1
  supergraph = supergraph_lib.Supergraph(SPACE, (8, 8, 1), 10)
  arrays, _ = checkpoint.latest(os.path.join(searched.project_dir, "checkpoints"))
  checkpoint.assign(checkpoint.named(supergraph.variables, checkpoint.SUPERGRAPH), arrays, "", "")
  expected = [supergraph(inputs, tf.constant(SPACE.indices(m["arch"])), training=False) for m in pool[:2]]
  for model, logits in zip(models, expected):
    np.testing.assert_allclose(model(inputs, training=False), logits, rtol=1e-4, atol=1e-5)
  history = models[0].fit(inputs, images[1][:32], epochs=2, batch_size=16, verbose=0)
  assert np.all(np.isfinite(history.history["loss"])) and "accuracy" in history.history
  fresh = searched.hypermodel.build(best[0])  # untrained: keras-tuner's way to the architecture alone
  assert not np.allclose(fresh(inputs, training=False), expected[0], atol=1e-3)


def test_a_reloaded_tuner_holds_the_finished_search(searched):
  again = make_tuner(os.path.dirname(searched.project_dir))
  assert outcome(again.result) == outcome(searched.result)
  assert as_text(again.oracle.history) == as_text(searched.oracle.history)
  assert again.oracle.pool == searched.oracle.pool
  assert [hp.values for hp in again.get_best_hyperparameters(2)] == [
      hp.values for hp in searched.get_best_hyperparameters(2)]


def test_the_same_images_as_a_dataset_are_the_same_search(searched, images):
  again = make_tuner(os.path.dirname(searched.project_dir))
  again.search(tf.data.Dataset.from_tensor_slices(images).batch(32), **SEARCH)
  assert outcome(again.result) == outcome(searched.result)
  assert again.config == searched.config


@pytest.mark.slow
def test_an_interrupted_search_resumes_to_the_uninterrupted_result(searched, images, tmp_path, monkeypatch):
  step = trainer_lib.SupergraphTrainer.train_step
  calls = []

  def interrupted_step(self, iterator, path):
    calls.append(path)
    if len(calls) == 3:  # the first step after the first pool update
      os.kill(os.getpid(), signal.SIGINT)
    return step(self, iterator, path)

  monkeypatch.setattr(trainer_lib.SupergraphTrainer, "train_step", interrupted_step)
  with pytest.raises(KeyboardInterrupt, match="Interrupted at step 1 of epoch 2"):
    make_tuner(tmp_path).search(*images, **SEARCH)
  monkeypatch.setattr(trainer_lib.SupergraphTrainer, "train_step", step)
  resumed = make_tuner(tmp_path)
  assert len(resumed.oracle.history) == 1 and resumed.result is None
  resumed.search(*images, **SEARCH)
  assert outcome(resumed.result, losses=False) == outcome(searched.result, losses=False)


def test_validation_data_is_the_validation_set_as_it_is(images, tmp_path):
  x, y = images
  tuner = make_tuner(tmp_path)
  tuner.search(x[:136], y[:136], validation_data=(x[136:], y[136:]), resolution=8, verbose=0)
  splits = data_sources.load(tuner.config.data)
  assert (splits.num_train, splits.num_validation) == (136, 64)
  loaded = np.concatenate([batch.numpy() for batch, _ in
                           batches_lib.eval_pipeline(splits, tuner.config.data, 64, split="validation")])
  np.testing.assert_array_equal(tuner.preprocess(x[136:]), loaded)


def test_a_custom_space_needs_no_width_and_any_spec_form_is_the_same_space(tmp_path):
  spec_file = tmp_path / "space.json"
  spec_file.write_text(json.dumps(SPACE.to_json()))
  for form in (SPACE, SPACE.to_json(), str(spec_file)):
    assert make_tuner(tmp_path, space=form).space == SPACE
  with pytest.raises(errors.UserError, match=r"^width=0\.5 applies to the built-in spaces \(small, large, "
                     r"macro\) only"):
    make_tuner(tmp_path, width=0.5)


def test_a_project_of_other_settings_or_data_is_refused_naming_what_differs(searched, images):
  directory = os.path.dirname(searched.project_dir)
  with pytest.raises(errors.UserError, match=r"holds a search with other settings \(pool_size was 2, now "
                     r"3\); pass overwrite=True to start afresh, or another project_name\.$"):
    make_tuner(directory, pool_size=3).search(*images, **SEARCH)
  x, y = images
  with pytest.raises(errors.UserError, match=r"other settings \(the images or labels differ\)"):
    make_tuner(directory).search(x, (y + 1) % 10, **SEARCH)


def test_importing_the_package_imports_no_tensorflow():
  code = ("import sys, pcnas_tf, pcnas_tf.errors; "
          "assert 'tensorflow' not in sys.modules and 'keras_tuner' not in sys.modules; "
          "print(pcnas_tf.LayerSpec.__name__)")
  done = subprocess.run([sys.executable, "-c", code], cwd=testing.REPO, capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": testing.REPO})
  assert done.returncode == 0 and done.stdout.strip() == "LayerSpec", done.stderr


# A user's mistakes: one sentence each, before anything is trained or written -----------------------------


@pytest.mark.parametrize("change, message", [
    (dict(pool_size=0), r"^Pool size P \(pool_size\) is 0; it must be at least 1\.$"),
    (dict(pool_size="5"), r"^pool_size='5' is not allowed; it must be an integer\.$"),
    (dict(warmup_epochs=1.5), r"^warmup_epochs=1\.5 is not allowed; it must be an integer\.$"),
    (dict(reuse_prefix=1), r"^reuse_prefix=1 is not allowed; it must be True or False\.$"),
    (dict(pool=3), r"^PCNASTuner takes no setting 'pool'; allowed: space, width, pool_size, .*, overwrite\.$"),
    (dict(constraint="speed"), r"^Constraint 'speed' is unknown; allowed: "),
    (dict(budget="cheap"), r"cheap"),
    (dict(space=42), r"^space=42 is not allowed; give small, large, macro, a SearchSpace, or its JSON"),
    (dict(space="tiny"), r"^Unknown search space 'tiny'; allowed: small, large, macro"),
    (dict(seed=-1), r"^Seed \(seed\) is -1; it must be at least 0\.$"),
    (dict(learning_rate=-1.0), r"^Learning rate \(learning_rate\) is -1\.0; it must be > 0\.$"),
])
def test_bad_settings_are_refused(tmp_path, change, message):
  with pytest.raises(errors.UserError, match=message):
    make_tuner(tmp_path, **change)


def _bad_searches(x, y):
  """(tuner changes, search arguments, the error's pattern) of each mistake."""
  return [
      ({}, dict(x=x[:, 0]), r"^x has shape \(200, 28\) \(rank 2\); images need rank 3 \(N, H, W\) or 4"),
      ({}, dict(x=np.repeat(x[..., None], 5, axis=3)), r"^x has 5 channels \(shape \(200, 28, 28, 5\)\); "
       r"allowed: 1 \(grey\), 3 \(RGB\) or 4 \(RGBA\)\.$"),
      ({}, dict(y=y + 0.5), r"^y holds \d\.5, which is not an integer class; labels must be integers"),
      ({}, dict(y=y.astype(str)), r"^y has dtype <U\d+; labels must be integers"),
      ({}, dict(y=np.eye(10)[y]), r"^y has shape \(200, 10\), one-hot or scores per class"),
      ({}, dict(y=y[:-1]), r"^y has shape \(199,\) for 200 images; give one integer label per image"),
      ({}, dict(num_classes=5), r"^y holds label 9, out of range; labels must be 0\.\.4\.$"),
      ({}, dict(y=y - 1), r"^y holds label -1, out of range; labels must be integers >= 0\.$"),
      ({}, dict(x=x[:136], y=y[:136], validation_split=None, validation_data=(x[136:], y[136:] + 1)),
       r"^validation y holds label 10, out of range; labels must be 0\.\.9\.$"),
      ({}, dict(x=x[:136], y=y[:136], validation_data=(x[136:], y[136:])),
       r"^Give validation_data or validation_split, not both\.$"),
      ({}, dict(y=None), r"^x is an array of images; give its labels too \(y\)\.$"),
      ({"steps_per_epoch": 0}, dict(x=x[:16], y=y[:16], validation_split=4),
       r"^Batch size 16 is larger than the 12 training images; use at most 12 \(batch_size\), or set "
       r"steps_per_epoch\.$"),
      ({}, dict(validation_split=10), r"^Validation batch size 32 x 2 batches needs 64 images but the "
       r"validation carve-out holds 10: use at most 10 images in 1 batch \(eval_batch_size=10 "
       r"eval_batches=1\), or validation_split=64 for 2 batches of 32\.$"),
      ({}, dict(validation_split=1.5), r"^Validation fraction 1\.5 must be in \(0, 1\)\.$"),
      ({}, dict(validation_split="half"), r"^validation_split='half' is not allowed; give a fraction"),
      ({}, dict(resolution=1), r"^Resolution 1 is smaller than the network's total stride 2"),
      ({}, dict(epochs=2), r"^epochs=2 is not allowed; the 3 intervals take 3 epochs \(interval_epochs=1\), "
       r"so give an integer >= 3, or None\.$"),
      ({}, dict(batch_size=8), r"^search\(\) takes no batch_size; allowed: x, y, validation_data"),
      ({}, dict(x=tf.data.Dataset.from_tensor_slices(x), y=None), r"give one of \(image, label\) pairs\.$"),
      ({}, dict(x=tf.data.Dataset.from_tensor_slices((x, y))),
       r"^x is a tf\.data\.Dataset of \(image, label\) pairs; pass no separate labels\.$"),
  ]


def test_every_bad_array_or_keyword_is_one_sentence_before_anything_is_written(images, tmp_path):
  x, y = images
  for index, (changes, arguments, message) in enumerate(_bad_searches(x, y)):
    tuner = make_tuner(tmp_path / str(index), **changes)
    with pytest.raises(errors.UserError, match=message):
      tuner.search(**{"x": x, "y": y, **SEARCH, **arguments})
    assert os.listdir(tuner.project_dir) == [], arguments.keys()


def test_results_before_a_search_are_refused(tmp_path):
  tuner = make_tuner(tmp_path)
  for method in (tuner.results_summary, tuner.get_best_models, lambda: tuner.search_picture):
    with pytest.raises(errors.UserError, match=r"No finished search in .*; call search\(\) first\."):
      method()
