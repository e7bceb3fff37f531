"""Tests of training a chosen architecture, on a tiny space and a slice of Fashion-MNIST."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcnas_tf.training import checkpoint
from pcnas_tf.training import optimizer_config
from pcnas_tf import errors
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.nn import supergraph as supergraph_lib
from tests import helpers as testing
from pcnas_tf.training import standalone as train_lib
from pcnas_tf.training import from_search
from pcnas_tf.training import train_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPACE = testing.tiny_space()
ARCH = ("MBConv_3_3", "MBConv_6_5", "Identity")
# What `export.spec.resolve_spec` reads from a train_result.json.
EXPORTER_KEYS = ("space", "arch", "input_shape", "num_classes")


class Interrupted(Exception):
  """Stands for a kill right after a checkpoint was written."""


@pytest.fixture(scope="module")
def data_config(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  return testing.tiny_fashion(str(root), resolution=8, validation=128, deterministic=True)


@pytest.fixture(name="config")
def config_fixture(data_config):
  """Two epochs of two steps at 8x8: a run takes seconds."""
  return train_config.TrainConfig(
      space=SPACE, arch=ARCH, epochs=2, steps_per_epoch=2, batch_size=16, eval_batch_size=64,
      mixup=0.2, label_smoothing=0.1, strategy="one_device", data=data_config)


def _write_json(path, content):
  with open(path, "w") as f:
    json.dump(content, f)
  return str(path)


@pytest.mark.slow
def test_training_writes_the_result_the_exporter_reads_and_a_loadable_model(config, tmp_path):
  result = train_lib.run_training(config, str(tmp_path), progress=False)
  with open(tmp_path / train_lib.RESULT_FILE) as f:
    written = json.load(f)
  assert written["top1"] == result["top1"] and 0 <= result["top1"] <= result["top5"] <= 1
  assert space_lib.SearchSpace.from_json(written["space"]) == SPACE
  assert tuple(written["arch"]) == ARCH and written["input_shape"] == [8, 8, 3]
  assert written["num_classes"] == 10 and written["test_images"] == 100
  assert written["epochs"] == 2 and len(written["log"]) == 2 and written["wall_time_s"] > 0
  assert written["config"]["data"]["resolution"] == 8 and "tensorflow" in written["versions"]
  model = keras.saving.load_model(str(tmp_path / train_lib.MODEL_FILE))
  assert model.count_params() == written["params"] and written["flops"] > 0
  assert any(f.startswith("events") for f in os.listdir(tmp_path / "tensorboard"))


@pytest.mark.slow
def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_one(config, tmp_path, monkeypatch):
  # Without MixUp: `data.mixup` draws from a stateful seed generator in a parallel map, so its mixes
  # differ from run to run even for the same seed.
  config = dataclasses.replace(config, mixup=0.0)
  train_lib.run_training(config, str(tmp_path / "straight"), progress=False)
  save = checkpoint.save

  def save_then_stop(*args):
    save(*args)
    raise Interrupted()

  monkeypatch.setattr(checkpoint, "save", save_then_stop)
  with pytest.raises(Interrupted):
    train_lib.run_training(config, str(tmp_path / "resumed"), progress=False)
  monkeypatch.setattr(checkpoint, "save", save)
  assert checkpoint.latest(str(tmp_path / "resumed" / "checkpoints"))[1]["epoch"] == 1
  train_lib.run_training(config, str(tmp_path / "resumed"), progress=False)
  straight, _ = checkpoint.latest(str(tmp_path / "straight" / "checkpoints"))
  resumed, state = checkpoint.latest(str(tmp_path / "resumed" / "checkpoints"))
  assert state["epoch"] == 2 and resumed.keys() == straight.keys() and len(straight) > 2
  for name, expected in straight.items():
    np.testing.assert_array_equal(resumed[name], expected, err_msg=name)


def test_supergraph_weights_are_inherited_for_the_architecture(config, tmp_path):
  config = dataclasses.replace(config, se=False, init_from_supergraph=str(tmp_path))
  supergraph = supergraph_lib.Supergraph(SPACE, (8, 8, 3), 10)
  rng = np.random.default_rng(0)
  for variable in supergraph.variables:
    variable.assign(np.abs(rng.normal(0.5, 0.2, variable.shape)).astype(np.float32))
  # As the search stores it: the supergraph's variables by name, with optimizer arrays beside them.
  arrays = checkpoint.arrays_of(checkpoint.named(supergraph.variables, checkpoint.SUPERGRAPH))
  checkpoint.save(str(tmp_path / "checkpoints"), 1,
                  {**arrays, checkpoint.ITERATIONS: np.array(7), "optimizer/momentum/x": np.zeros(3)}, {})
  model = train_lib.model_lib.build_model(ARCH, SPACE, (8, 8, 3), 10)
  from_search.inherit_from_search(str(tmp_path), config.space, config.arch, model)
  images = tf.random.stateless_normal((2, 8, 8, 3), seed=(1, 2))
  expected = supergraph(images, tf.constant(SPACE.indices(ARCH)), training=False)
  np.testing.assert_allclose(model(images, training=False), expected, rtol=1e-5)


# Bad input ------------------------------------------------------------------------------------------


def test_architecture_not_in_the_space_is_refused(config):
  with pytest.raises(errors.UserError, match="'MBConv_6_5' is not allowed at layer 2; allowed: "
                     "Identity, MBConv_3_3"):
    dataclasses.replace(config, arch=("Identity", "Identity", "MBConv_6_5")).validate()


def test_supergraph_checkpoint_of_another_space_is_refused(config, tmp_path):
  config = dataclasses.replace(config, se=False, init_from_supergraph=str(tmp_path))
  other = supergraph_lib.Supergraph(space_lib.macro_space(0.25), (8, 8, 3), 10)
  arrays = checkpoint.arrays_of(checkpoint.named(other.variables, checkpoint.SUPERGRAPH))
  checkpoint.save(str(tmp_path / "checkpoints"), 1, arrays, {})
  model = train_lib.model_lib.build_model(ARCH, SPACE, (8, 8, 3), 10)
  with pytest.raises(checkpoint.CheckpointMismatchError, match=r"does not fit .* another"):
    from_search.inherit_from_search(str(tmp_path), config.space, config.arch, model)


def test_training_checkpoint_of_another_architecture_is_refused(config, tmp_path):
  train_lib.prepare_work_dir(str(tmp_path), config, overwrite=False)
  state = {"arch": ["Identity"] * 3, "space_fingerprint": SPACE.fingerprint(), "se": True}
  checkpoint.save(str(tmp_path / "checkpoints"), 1, {"model/x": np.zeros(1)}, state)
  with pytest.raises(checkpoint.CheckpointMismatchError, match=r"\['Identity', 'Identity', 'Identity'\]"
                     r" .*not for 120"):
    train_lib.run_training(config, str(tmp_path), progress=False)


@pytest.mark.parametrize("content", [{"space": SPACE.to_json()}, {"space": {}, "final_pool": []}])
def test_search_result_without_a_final_pool_is_refused(tmp_path, content):
  path = _write_json(tmp_path / "search_result.json", content)
  with pytest.raises(errors.UserError, match="has no final pool"):
    from_search.read_search_result(path)


def test_pool_rank_picks_a_member_and_out_of_range_is_refused():
  result = {"final_pool": [{"arch": ["a"]}, {"arch": ["b"]}], "chosen": {"arch": ["a"]}}
  assert from_search.pool_member(result, "r.json")["arch"] == ["a"]
  assert from_search.pool_member(result, "r.json", 1)["arch"] == ["b"]
  with pytest.raises(errors.UserError, match="Pool rank 2 is out of range; .* allowed 0..1"):
    from_search.pool_member(result, "r.json", 2)


def test_existing_work_dir_needs_overwrite(config, tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(errors.UserError, match="already exists and holds files of something else; pass "
                     "--overwrite"):
    train_lib.prepare_work_dir(str(tmp_path), config, overwrite=False)
  train_lib.prepare_work_dir(str(tmp_path), config, overwrite=True)
  assert (tmp_path / "notes.txt").exists()  # --overwrite replaces only the training's own files
  checkpoint.save(str(tmp_path / train_lib.CHECKPOINT_DIR), 1, {}, {})  # trained state
  with pytest.raises(errors.UserError, match="different config \\(epochs was 2, now 3\\)"):
    train_lib.prepare_work_dir(str(tmp_path), dataclasses.replace(config, epochs=3), overwrite=False)
  train_lib.prepare_work_dir(str(tmp_path), config, overwrite=False)  # an unfinished run resumes
  _write_json(tmp_path / train_lib.RESULT_FILE, {})
  with pytest.raises(errors.UserError, match="holds a finished training"):
    train_lib.prepare_work_dir(str(tmp_path), config, overwrite=False)


def test_work_dir_without_trained_state_is_taken_over_by_another_config(config, tmp_path):
  train_lib.prepare_work_dir(str(tmp_path), dataclasses.replace(config, epochs=3), overwrite=False)
  train_lib.prepare_work_dir(str(tmp_path), config, overwrite=False)
  assert testing.read_json(tmp_path / train_lib.CONFIG_FILE)["epochs"] == 2


@pytest.fixture(name="no_training")
def no_training_fixture(monkeypatch):
  def train_epoch(self):
    raise AssertionError("an epoch was trained before the run was rejected")
  monkeypatch.setattr(train_lib.Training, "_train_epoch", train_epoch)


@pytest.mark.parametrize("change, message", [
    ({"steps_per_epoch": 0, "batch_size": 1000}, r"Batch size 1000 is larger than the 472 training "
     r"images; use at most 472 \(--batch_size\), or set --steps_per_epoch\."),
    ({"data": {"resolution": 1}}, r"Resolution 1 is smaller than the network's total stride 2"),
    ({"se": False, "init_from_supergraph": "nowhere"}, r"--init_from_supergraph=nowhere has no search "
     r"checkpoint"),
])
def test_bad_input_is_refused_before_training_or_writing(config, tmp_path, no_training, change,
                                                         message):
  if "data" in change:
    change = {"data": dataclasses.replace(config.data, **change["data"])}
  with pytest.raises(errors.UserError, match=message):
    train_lib.run_training(dataclasses.replace(config, **change), str(tmp_path / "run"),
                           progress=False)
  assert not (tmp_path / "run").exists()


def test_corrected_command_trains_in_the_work_dir_of_a_rejected_one(config, tmp_path):
  work_dir = str(tmp_path / "run")
  with pytest.raises(errors.UserError, match="Batch size 1000"):
    train_lib.run_training(dataclasses.replace(config, steps_per_epoch=0, batch_size=1000), work_dir,
                           progress=False)
  config = dataclasses.replace(config, epochs=1)
  assert train_lib.run_training(config, work_dir, progress=False)["epochs"] == 1


def test_unusable_work_dir_is_refused_before_the_data_is_read(config, tmp_path, monkeypatch):
  monkeypatch.setattr(train_lib.data_sources, "load", lambda *a, **k: pytest.fail("data was read"))
  (tmp_path / "file").write_text("")
  with pytest.raises(errors.UserError, match="Cannot create work directory .* is a file"):
    train_lib.run_training(config, str(tmp_path / "file" / "run"), progress=False)


@pytest.mark.parametrize("change, message", [
    ({"init_from_supergraph": "runs/demo"}, "needs --nose"),
    ({"epochs": 0}, r"Epochs \(--epochs\) is 0; it must be at least 1"),
    ({"optimizer": optimizer_config.OptimizerConfig(final_learning_rate=1.0)},
     "Final learning rate 1.0 is above the initial 0.1"),
    ({"optimizer": optimizer_config.OptimizerConfig(momentum=1.0)},
     r"Momentum \(--momentum\) is 1.0; allowed: 0.0 <= value < 1.0"),
    ({"label_smoothing": 1.0}, r"Label smoothing .* is 1.0; allowed: 0.0 <= value < 1.0"),
    ({"strategy": "tpu"}, "Strategy 'tpu' is unknown"),
])
def test_bad_settings_are_one_clear_sentence(config, change, message):
  with pytest.raises(errors.UserError, match=message):
    dataclasses.replace(config, **change).validate()


def _run_main(*args, cwd):
  env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
  return subprocess.run([sys.executable, "-m", "pcnas_tf.train_main", *args], capture_output=True,
                        text=True, timeout=300, cwd=cwd, env=env)


@pytest.mark.slow
def test_cli_reports_bad_input_in_one_line_with_exit_status_2(tmp_path):
  no_pool = _write_json(tmp_path / "search_result.json", {"space": SPACE.to_json()})
  for args, message in [(["--arch=00000009", "--space=macro"], "Character '9' at layer 7"),
                        ([f"--search_result={no_pool}"], "has no final pool")]:
    result = _run_main(*args, f"--work_dir={tmp_path / 'run'}", cwd=str(tmp_path))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert lines[-1].startswith("error: ") and message in lines[-1], lines[-3:]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_trains_a_search_results_member_with_the_searchs_data(data_config, tmp_path):
  member = {"arch": list(ARCH), "arch_string": SPACE.arch_to_string(ARCH), "predicted_latency_ms": 1.5}
  search = {"space": SPACE.to_json(), "final_pool": [{"arch": ["Identity"] * 3}, member],
            "chosen": {"arch": ["Identity"] * 3}, "constraint": {"kind": "latency", "unit": "ms"},
            "config": {"data": dataclasses.asdict(data_config)}}
  path = _write_json(tmp_path / "search_result.json", search)
  result = _run_main(f"--search_result={path}", "--pool_rank=1", f"--work_dir={tmp_path / 'run'}",
                     "--epochs=1", "--steps_per_epoch=2", "--batch_size=16", "--eval_batch_size=64",
                     "--strategy=one_device", "--nose", "--noprogress", cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Trained 120 (MBConv_3_3, MBConv_6_5, Identity) for 1 epochs" in result.stdout
  with open(tmp_path / "run" / train_lib.RESULT_FILE) as f:
    written = json.load(f)
  assert all(key in written for key in EXPORTER_KEYS) and written["predicted_latency_ms"] == 1.5
  assert written["config"]["data"] == json.loads(json.dumps(dataclasses.asdict(data_config)))
  assert written["config"]["pool_rank"] == 1 and written["se"] is False
