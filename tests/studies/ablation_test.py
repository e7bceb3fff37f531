"""Tests of the Table 3 ablation: the grid end to end, the shared One-Shot training, bad input."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from pcnas_tf.studies import ablation as ablation_lib
from pcnas_tf.training import checkpoint
from pcnas_tf.training import optimizer_config
from pcnas_tf import errors
from pcnas_tf.searcher import loop as search_lib
from tests import helpers as testing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory):
  return testing.tiny_search_config(str(tmp_path_factory.mktemp("ablation")))


@pytest.fixture(scope="module")
def tiny_ablation(tiny_search, tmp_path_factory):
  work_dir = str(tmp_path_factory.mktemp("run"))
  config = ablation_lib.AblationConfig(tiny_search)
  return work_dir, ablation_lib.run_ablation(config, work_dir, progress=False)


def _train_only_folder(root):
  """An image folder of 2 classes x 12 PNGs of 8x8 with a train split and no test split."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for label in ("a", "b"):
    os.makedirs(os.path.join(root, "train", label))
    for i in range(12):
      png = tf.io.encode_png(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).numpy()
      with open(os.path.join(root, "train", label, f"{i}.png"), "wb") as f:
        f.write(png)
  return str(root)


@pytest.fixture(name="no_searches")
def no_searches_fixture(monkeypatch):
  monkeypatch.setattr(search_lib, "run_search", lambda *a, **k: pytest.fail("a search ran"))


def test_data_without_a_test_split_is_refused_before_any_search(tiny_search, tmp_path, no_searches):
  data = dataclasses.replace(tiny_search.data, dataset="image_folder", validation=4,
                             data_dir=_train_only_folder(tmp_path / "images"))
  search = dataclasses.replace(tiny_search, data=data, batch_size=4, eval_batch_size=2)
  with pytest.raises(errors.UserError, match="has no test split"):
    ablation_lib.run_ablation(ablation_lib.AblationConfig(search), str(tmp_path / "run"), progress=False)
  assert not (tmp_path / "run").exists()


def test_validation_batches_that_do_not_fit_are_refused_before_any_search(tiny_search, tmp_path,
                                                                          no_searches):
  search = dataclasses.replace(tiny_search, eval_batch_size=128, eval_batches=2)
  with pytest.raises(errors.UserError, match="128 x 2 batches needs 256 images"):
    ablation_lib.run_ablation(ablation_lib.AblationConfig(search), str(tmp_path / "run"), progress=False)
  assert not (tmp_path / "run").exists()


def test_row_of_another_trained_config_is_refused_before_any_search(tiny_search, tmp_path, no_searches):
  row = os.path.join(str(tmp_path), ablation_lib.row_name("pcnas", "pcnas"))
  search_lib.prepare_work_dir(row, dataclasses.replace(tiny_search, pool_size=3), overwrite=False)
  checkpoint.save(os.path.join(row, "checkpoints"), 1, {}, {})
  with pytest.raises(errors.UserError, match="pool_size was 3, now 2"):
    ablation_lib.run_ablation(ablation_lib.AblationConfig(tiny_search), str(tmp_path), progress=False)
  assert not (tmp_path / ablation_lib.CONFIG_FILE).exists()


def test_standalone_training_has_the_supergraphs_budget_and_recipe(tiny_search):
  space = testing.tiny_space()
  arch = space.arch_from_indices((1, 0, 1))
  config = ablation_lib.standalone_config(tiny_search, space, arch, 4)
  assert (config.epochs, config.steps_per_epoch, config.batch_size) == (4, 2, 16)
  assert config.optimizer == optimizer_config.OptimizerConfig(0.1, 5e-4, 0.9, 1e-4)
  assert (config.se, config.mixup, config.label_smoothing) == (False, 0.0, 0.0)
  assert config.arch == arch and config.data == tiny_search.data
  assert ablation_lib.supergraph_epochs(tiny_search) == 1 + 3 * 1


@pytest.mark.slow
def test_ablation_runs_table_3s_grid_and_trains_each_chosen_arch_alone(tiny_ablation, tiny_search):
  work_dir, result = tiny_ablation
  rows = result["rows"]
  assert [(r["training"], r["search"]) for r in rows] == list(ablation_lib.GRID)
  for row in rows:
    assert 0 <= row["top1"] <= 1 and row["predicted_flops"] <= row["budget"]
    with open(os.path.join(work_dir, f"{row['training']}_{row['search']}", "standalone",
                           "train_result.json")) as f:
      trained = json.load(f)
    assert trained["arch"] == row["arch"] and trained["epochs"] == result["standalone_epochs"] == 4
  with open(os.path.join(work_dir, ablation_lib.RESULT_FILE)) as f:
    assert set(json.load(f)) == {"rows", "standalone_epochs", "standalone_source", "config", "versions"}
  table = ablation_lib.format_table(result).splitlines()
  assert len(table) == 4 and "top-1" in table[0] and rows[2]["arch_string"] in table[3]


@pytest.mark.slow
def test_one_shot_rows_share_one_training_and_find_what_a_separate_training_finds(
    tiny_ablation, tiny_search, tmp_path):
  work_dir, result = tiny_ablation
  shared = result["rows"][1]["search_details"]
  assert shared["shared_checkpoint_copied"] and shared["shared_training_with"] == "oneshot_ea"
  with open(os.path.join(work_dir, "oneshot_pcnas", search_lib.RESULT_FILE)) as f:
    pool_search = json.load(f)
  with open(os.path.join(work_dir, "oneshot_ea", search_lib.RESULT_FILE)) as f:
    assert pool_search["log"] == json.load(f)["log"]  # one training, not two
  alone = search_lib.run_search(dataclasses.replace(tiny_search, training="oneshot", search="pcnas"),
                                str(tmp_path), progress=False)
  assert alone["final_pool"] == pool_search["final_pool"]


def test_sharing_refuses_a_checkpoint_that_is_not_the_end_of_training(tiny_search, tmp_path):
  source = str(tmp_path / "source")
  state = {"epoch": 2, "checkpoints": 3, "oracle": {"history": []}}
  checkpoint.save(os.path.join(source, "checkpoints"), 3, {}, state)
  with pytest.raises(ValueError, match="not the end of One-Shot training"):
    ablation_lib.share_oneshot_training(source, str(tmp_path / "target"), tiny_search)


def test_negative_standalone_epochs_are_one_clear_sentence(tiny_search):
  with pytest.raises(errors.UserError, match=r"Stand-alone epochs \(--standalone_epochs\) is -1"):
    ablation_lib.AblationConfig(tiny_search, standalone_epochs=-1).validate()


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
  result = subprocess.run([sys.executable, "-m", "pcnas_tf.ablation_main", "--standalone_epochs=-1",
                           f"--work_dir={tmp_path}"], capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      "error: Stand-alone epochs (--standalone_epochs) is -1; it must be at least 0 (0: the "
      "supergraph's epochs).")
