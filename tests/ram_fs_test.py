"""Every directory on a non-local TensorFlow file system (`ram://`): files.py's atomic writes, reads and
removals there, and a tiny search, retraining and export whose work directory, image folder and
latency cache are all on it, leaving nothing on local disk."""

import io
import json
import os
import uuid

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pcnas_tf import errors
from pcnas_tf import files
from tests import helpers as testing


@pytest.fixture
def ram_root():
  """A fresh `ram://` directory (the file system is one per process, shared by the tests), removed after."""
  root = f"ram://{uuid.uuid4().hex}"
  tf.io.gfile.makedirs(root)  # ram:// lists and removes only directories made as such
  yield root
  tf.io.gfile.rmtree(root)


def test_atomic_writes_on_ram_replace_the_file_and_leave_nothing_temporary(ram_root):
  path = os.path.join(ram_root, "out", "result.json")
  files.make_dir(os.path.dirname(path))
  files.write_json(path, {"a": 1})
  files.write_json(path, {"a": 2})
  assert files.read_json(path, "result") == {"a": 2}
  assert files.listdir(os.path.dirname(path)) == ["result.json"]
  files.write_bytes(os.path.join(ram_root, "out", "page.html"), "<p>é</p>".encode())
  assert files.read_bytes(os.path.join(ram_root, "out", "page.html")).decode() == "<p>é</p>"


def test_reading_missing_or_corrupt_json_on_ram_says_so_in_one_sentence(ram_root):
  missing = os.path.join(ram_root, "none.json")
  with pytest.raises(errors.UserError, match=r"^Cannot read latency table 'ram://.*none.json': No such file"):
    files.read_json(missing, "latency table")
  corrupt = os.path.join(ram_root, "bad.json")
  files.write_text(corrupt, "{not json")
  with pytest.raises(errors.UserError, match=r"^Latency table 'ram://.*bad.json' is corrupt \(not valid JSON"):
    files.read_json(corrupt, "latency table")


def test_remove_on_ram_takes_a_file_or_a_tree_and_ignores_what_is_not_there(ram_root):
  tree = os.path.join(ram_root, "tree")
  files.make_dir(os.path.join(tree, "sub"))
  files.write_text(os.path.join(tree, "sub", "a.txt"), "a")
  files.write_text(os.path.join(ram_root, "b.txt"), "b")
  files.remove(tree)
  files.remove(os.path.join(ram_root, "b.txt"))
  files.remove(os.path.join(ram_root, "never"))
  assert not files.exists(tree) and not files.exists(os.path.join(ram_root, "b.txt"))


def test_a_file_where_a_directory_is_wanted_on_ram_is_refused(ram_root):
  files.write_text(os.path.join(ram_root, "taken"), "x")
  with pytest.raises(errors.UserError, match=r"exists and is not a directory; choose another --work_dir"):
    files.check_writable_dir(os.path.join(ram_root, "taken"))
  files.check_writable_dir(os.path.join(ram_root, "new"))  # could be created: nothing to refuse


def test_a_checkpoint_on_ram_is_written_in_place_and_read_back(ram_root):
  from pcnas_tf.training import checkpoint  # pylint: disable=g-import-not-at-top
  directory = os.path.join(ram_root, "checkpoints")
  for number in range(3):
    checkpoint.save(directory, number, {"w": np.full(3, number, np.float32)}, {"step": number})
  arrays, state = checkpoint.latest(directory)
  assert state == {"step": 2} and arrays["w"].tolist() == [2, 2, 2]
  assert sorted(files.listdir(directory)) == ["ckpt-00000001", "ckpt-00000002"]  # the two newest
  files.remove(os.path.join(directory, "ckpt-00000002", "state.json"))  # as if cut off while written
  assert checkpoint.latest(directory)[1] == {"step": 1}



def test_a_work_directory_on_ram_is_locked_on_this_machine(ram_root):
  from pcnas_tf.training import workdir  # pylint: disable=g-import-not-at-top
  work_dir = os.path.join(ram_root, "run")
  with workdir.WorkDirLock(work_dir) as lock:
    assert files.is_local(lock.path) and not files.exists(work_dir)
    with pytest.raises(errors.UserError, match=r"^Work directory 'ram://.*/run' is in use by another run"):
      with workdir.WorkDirLock(work_dir):
        pass


def test_a_ground_truth_table_off_local_disk_is_refused_before_anything_is_trained(ram_root):
  from pcnas_tf.studies import ground_truth  # pylint: disable=g-import-not-at-top
  from pcnas_tf.studies import ground_truth_build  # pylint: disable=g-import-not-at-top
  train = testing.FakeStandalone()
  with pytest.raises(ground_truth.GroundTruthError, match=r"is not on a local file system; its shards lock"):
    ground_truth_build.build(os.path.join(ram_root, "gt.json"), ground_truth_build.BuildConfig(), train)
  assert train.calls == [] and files.listdir(ram_root) == []


@pytest.fixture
def tfds_reads_ram(monkeypatch):
  """Teaches etils' paths (what tfds opens a data directory with) the `ram://` scheme, through
  TensorFlow's file system as for `gs://`; etils knows only gs://, s3://, az:// and hf://."""
  from etils.epath import backend  # pylint: disable=g-import-not-at-top
  from etils.epath import gpath  # pylint: disable=g-import-not-at-top
  from etils.epath import register  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(gpath, "_URI_PREFIXES", gpath._URI_PREFIXES + ("ram://",))  # pylint: disable=protected-access
  monkeypatch.setattr(gpath, "_URI_SCHEMES", gpath._URI_SCHEMES | {"ram"})  # pylint: disable=protected-access
  monkeypatch.setitem(gpath._URI_MAP_ROOT, "ram://", "/ram/")  # pylint: disable=protected-access
  monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, "ram", backend.tf_backend)  # pylint: disable=protected-access
  monkeypatch.setitem(register._URI_PREFIXES_TO_CLS, "ram://", gpath.PosixGPath)  # pylint: disable=protected-access


def _write_image_folder(root, per_class=48, classes=("a", "b", "c")):
  """root/{train,test}/<class>/<i>.png of 8x8 RGB images, each class its own brightness."""
  rng = np.random.default_rng(0)
  for split, count in (("train", per_class), ("test", per_class // 4)):
    for label, name in enumerate(classes):
      files.make_dir(os.path.join(root, split, name))
      for index in range(count):
        pixels = np.clip(rng.normal(60 + 70 * label, 20, (8, 8, 3)), 0, 255).astype(np.uint8)
        encoded = io.BytesIO()
        Image.fromarray(pixels).save(encoded, format="PNG")
        files.write_bytes(os.path.join(root, split, name, f"{index}.png"), encoded.getvalue())


@pytest.mark.slow
def test_search_retraining_and_export_run_with_every_directory_on_ram(ram_root, tmp_path, monkeypatch,
                                                                     tfds_reads_ram):
  del tfds_reads_ram  # used for its effect
  from pcnas_tf import pipeline  # pylint: disable=g-import-not-at-top
  from pcnas_tf.data import data_config  # pylint: disable=g-import-not-at-top
  from pcnas_tf.searcher import search_config  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)  # a path mangled into a local one would land here
  data_dir, work_dir = os.path.join(ram_root, "images"), os.path.join(ram_root, "run")
  _write_image_folder(data_dir)
  space_path = os.path.join(ram_root, "tiny_space.json")
  files.write_json(space_path, testing.tiny_space().to_json())
  config = search_config.SearchConfig(
      space=space_path, pool_size=2, num_samples=3, warmup_epochs=1, interval_epochs=1,
      steps_per_epoch=2, batch_size=16, constraint="latency", budget="0.6",
      latency_cache_dir=os.path.join(ram_root, "latency"), latency_batch=2, calibration_archs=0,
      eval_batch_size=16, eval_batches=2, strategy="one_device", checkpoint_every=1,
      data=data_config.DataConfig(dataset="image_folder", data_dir=data_dir, resolution=8,
                                  validation=32, deterministic=True))
  retraining = pipeline.Retraining(epochs=1, steps_per_epoch=2, batch_size=16, eval_batch_size=16)
  result = pipeline.run_pipeline(config, work_dir, retraining, latency_runs=2, progress=False)
  assert 0 <= result["test_top1"] <= 1 and result["latency_ms"] > 0
  for path in result["paths"].values():
    assert path.startswith(work_dir) and tf.io.gfile.exists(path), path
  assert json.loads(files.read_bytes(os.path.join(work_dir, pipeline.RESULT_FILE))) == result
  assert {"checkpoints", "tensorboard", "report.html", "search_result.json"} <= set(files.listdir(work_dir))
  assert tf.io.gfile.listdir(os.path.join(work_dir, "retrain", "checkpoints"))
  assert [name for name in files.listdir(os.path.join(ram_root, "latency")) if name.endswith(".json")]
  assert os.listdir(tmp_path) == []
