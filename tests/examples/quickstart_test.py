"""examples/quickstart.ipynb executed by a real Jupyter kernel (nbclient, ipykernel) on tiny settings,
and its outputs checked against what it wrote."""

import json
import os

import nbclient
import nbformat
import pytest

from pcnas_tf.data import data_config
from tests import helpers as testing

NOTEBOOK = os.path.join(testing.REPO, "examples", "quickstart.ipynb")
WIDGET = "application/vnd.jupyter.widget-view+json"
# TensorFlow's and LiteRT's start-up lines and TensorFlow's INFO records, which `pcnas_tf.PCNASTuner`
# keeps out of a notebook.
NOISE = ("oneDNN", "cuda drivers", "cuInit", "XNNPACK delegate", "absl::InitializeLog", "INFO:tensorflow")


def text_of(cell, stream=None):
  """What a cell printed (on `stream` only, if given) and the plain text of its results."""
  parts = []
  for output in cell.outputs:
    if output.output_type == "stream" and stream in (None, output.name):
      parts.append(output.text)
    elif output.output_type == "execute_result" and stream is None:
      parts.append(output.data.get("text/plain", ""))
  return "".join(parts)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """(the executed notebook's cells by tag, its work directory)."""
  if not os.path.exists(data_config.DEBIAN_FASHION_MNIST):
    pytest.skip("Debian's dataset-fashion-mnist is not installed (`make setup` installs it).")
  root = tmp_path_factory.mktemp("quickstart")
  work_dir = str(root / "runs" / "quickstart")
  env = {"PCNAS_QUICKSTART_TINY": "1", "PCNAS_QUICKSTART_DIR": work_dir,
         "PYTHONPATH": os.pathsep.join(filter(None, [testing.REPO, os.environ.get("PYTHONPATH")]))}
  # The kernel inherits this process' environment; a user's has no TF_CPP_MIN_LOG_LEVEL (conftest sets it).
  env["TF_CPP_MIN_LOG_LEVEL"] = None
  saved = {name: os.environ.get(name) for name in env}
  os.environ.update({name: value for name, value in env.items() if value is not None})
  os.environ.pop("TF_CPP_MIN_LOG_LEVEL")
  try:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(root)}}).execute()
  finally:
    for name, value in saved.items():
      if value is None:
        os.environ.pop(name)
      else:
        os.environ[name] = value
  cells = {tag: cell for cell in notebook.cells for tag in cell.metadata.get("tags", [])}
  return cells, work_dir


@pytest.mark.slow
def test_the_search_shows_widget_progress_bars_and_no_start_up_noise(executed):
  cells, _ = executed
  outputs = cells["search"].outputs
  assert any(WIDGET in output.get("data", {}) for output in outputs)
  for cell in cells.values():
    assert not any(line in text_of(cell) for line in NOISE), text_of(cell)


@pytest.mark.slow
def test_the_summary_and_pictures_show_the_search_it_wrote(executed):
  cells, work_dir = executed
  result = testing.read_json(os.path.join(work_dir, "search_result.json"))
  summary = text_of(cells["summary"], "stdout")
  assert summary.startswith("Results summary\nResults in ")
  for rank, member in enumerate(result["final_pool"]):
    assert f"#{rank} {member['arch_string']}: {', '.join(member['arch'])}" in summary
  assert result["space"]["name"] == "fashion5" and len(result["intervals"]) == 5
  for tag in ("search_picture", "architecture_picture"):
    assert any("image/png" in output.get("data", {}) for output in cells[tag].outputs)


@pytest.mark.slow
def test_the_best_model_is_fine_tuned_and_exported_with_parity(executed):
  cells, work_dir = executed
  assert "after fit" in text_of(cells["fit"], "stdout")
  exported = testing.read_json(os.path.join(work_dir, "export", "export_result.json"))
  for name, path in (("saved_model", "saved_model"), ("tflite", "model.tflite"), ("onnx", "model.onnx")):
    assert exported["formats"][name]["parity_ok"] and os.path.exists(os.path.join(work_dir, "export", path))
    assert f"{name:12s} {path}" in text_of(cells["export"], "stdout")
  line = json.loads(text_of(cells["result"], "stdout").strip().splitlines()[-1])
  result = testing.read_json(os.path.join(work_dir, "search_result.json"))
  assert line["arch"] == result["chosen"]["arch_string"] == exported["arch_string"]
  assert line["exported"] == ["onnx", "saved_model", "tflite"]
  assert 0 <= line["test_top1_inherited"] <= 1 and 0 <= line["test_top1_fine_tuned"] <= 1
