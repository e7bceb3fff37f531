"""Tests of the one-command pipeline and of the quiet console: search -> retrain -> export -> timing."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests import helpers as testing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Start-up and library noise a user must not see (README, "The first two commands").
NOISE = ("absl::InitializeLog", "oneDNN", "cuda", "cuInit", "XNNPACK delegate", "AVX", "retracing",
         "All-NaN", "trackable_obj", "DT_HALF", "Traceback", "Downloading", "dataset_info")


def _pipeline_argv(root, work_dir):
  space_path = os.path.join(root, "tiny_space.json")
  with open(space_path, "w") as f:
    json.dump(testing.tiny_space().to_json(), f)
  data = testing.tiny_fashion(root, resolution=8, validation=128, deterministic=True)
  return [sys.executable, "-m", "pcnas_tf.pipeline_main", f"--work_dir={work_dir}",
          f"--space={space_path}", "--width=1", f"--data_dir={data.data_dir}", "--resolution=8",
          "--validation=128", "--pool_size=2", "--num_samples=3", "--warmup_epochs=1",
          "--interval_epochs=1", "--steps_per_epoch=2", "--batch_size=16", "--constraint=latency",
          "--budget=0.6", f"--latency_cache_dir={os.path.join(root, 'latency')}", "--latency_batch=2",
          "--calibration_archs=0", "--eval_batch_size=32", "--eval_batches=2", "--strategy=one_device",
          "--checkpoint_every=1", "--retrain_epochs=1", "--retrain_steps_per_epoch=2",
          "--retrain_batch_size=16", "--retrain_pool_members=2", "--latency_runs=3"]


@pytest.mark.slow
def test_pipeline_goes_from_data_to_a_timed_export_quietly_and_resumes(tmp_path):
  work_dir = str(tmp_path / "run")
  argv = _pipeline_argv(str(tmp_path), work_dir)
  first = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  result = json.loads(first.stdout.strip().splitlines()[-1])
  for key in ("test_top1", "latency_ms", "budget_ms", "within_budget", "wall_s", "paths"):
    assert key in result
  assert 0 <= result["test_top1"] <= 1 and result["latency_ms"] > 0 and result["budget_ms"] > 0
  assert result["within_budget"] == (result["latency_ms"] <= result["budget_ms"])
  for path in result["paths"].values():
    assert os.path.exists(path), path
  assert json.loads((tmp_path / "run" / "pipeline_result.json").read_text()) == result
  chosen, second = result["retrained_pool"]
  assert chosen["rank"] == 0 and chosen["arch_string"] == result["arch"]
  assert chosen["test_top1"] == result["test_top1"]
  assert chosen["measured_latency_ms"] == result["latency_ms"] and second["measured_latency_ms"] > 0
  assert os.path.exists(os.path.join(work_dir, "retrain_pool", "1", "export", "model.tflite"))
  report = (tmp_path / "run" / "report.html").read_text()
  assert 'class="pending"' not in report and second["arch_string"] in report
  assert sorted(os.listdir(os.path.join(work_dir, "tensorboard", "retrained"))) == [
      f"rank_0_{chosen['arch_string']}", f"rank_1_{second['arch_string']}"]
  output = first.stdout + first.stderr
  assert [noise for noise in NOISE if noise in output] == []
  # Run again: every stage is reused, nothing is retrained or exported again.
  model = os.path.join(work_dir, "retrain", "model.keras")
  modified = os.path.getmtime(model), os.path.getmtime(result["paths"]["tflite"])
  again = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert json.loads(again.stdout.strip().splitlines()[-1])["test_top1"] == result["test_top1"]
  assert (os.path.getmtime(model), os.path.getmtime(result["paths"]["tflite"])) == modified
  # Other retraining settings: refused, naming the difference; the finished model is kept.
  changed = subprocess.run(argv + ["--retrain_epochs=2"], capture_output=True, text=True, cwd=REPO,
                           timeout=600)
  assert changed.returncode == 2 and "holds a finished retraining with other settings" in changed.stderr
  assert "epochs" in changed.stderr and os.path.getmtime(model) == modified[0]


_HELD = textwrap.dedent('''
    import os, sys
    from pcnas_tf import console
    console._state["verbose"] = sys.argv[1] == "verbose"
    try:
      with console.native_stderr_held():
        os.write(2, b"native noise\\n")
        if sys.argv[2] == "raise":
          raise RuntimeError("real failure")
    except RuntimeError:
      pass
    os.write(2, b"after\\n")
''')


@pytest.mark.parametrize("verbose, raises, shown", [
    ("quiet", "ok", False), ("quiet", "raise", True), ("verbose", "ok", True)])
def test_native_stderr_is_held_back_unless_the_block_fails_or_verbose(verbose, raises, shown):
  done = subprocess.run([sys.executable, "-c", _HELD, verbose, raises], capture_output=True, text=True,
                        cwd=REPO, timeout=60)
  assert done.returncode == 0 and done.stderr.endswith("after\n")
  assert ("native noise" in done.stderr) == shown


@pytest.mark.parametrize("flag, sentence", [
    ("--retrain_epochs=0", "Epochs (--retrain_epochs) is 0; it must be at least 1."),
    ("--retrain_learning_rate=-1", "Learning rate (--retrain_learning_rate) is -1.0; it must be > 0."),
    ("--retrain_mixup=-0.5", "MixUp alpha (--retrain_mixup) is -0.5"),
    ("--latency_runs=0", "Latency runs (--latency_runs) is 0; it must be at least 1."),
    ("--retrain_pool_members=0",
     "Retrained pool members (--retrain_pool_members) is 0; it must be at least 1."),
])
def test_bad_pipeline_flags_fail_in_one_sentence_before_anything_is_written(tmp_path, flag, sentence):
  work_dir = tmp_path / "run"
  done = subprocess.run([sys.executable, "-m", "pcnas_tf.pipeline_main", f"--work_dir={work_dir}", flag],
                        capture_output=True, text=True, cwd=REPO, timeout=300)
  assert done.returncode == 2 and "Traceback" not in done.stderr
  assert done.stderr.strip().splitlines()[-1].startswith(f"error: {sentence}")
  assert not work_dir.exists()


def test_more_retrained_pool_members_than_the_pool_size_are_refused():
  from pcnas_tf import errors  # pylint: disable=g-import-not-at-top
  from pcnas_tf import pipeline  # pylint: disable=g-import-not-at-top
  pipeline.Retraining(pool_members=2).validate(pool_size=2)
  with pytest.raises(errors.UserError, match=r"is 3; it must be at most the pool size 2 \(--pool_size\)"):
    pipeline.Retraining(pool_members=3).validate(pool_size=2)


def test_preparing_fashion_mnist_says_one_line_and_nothing_of_tfds(tmp_path, capfd):
  from pcnas_tf.data import fashion_mnist  # pylint: disable=g-import-not-at-top
  testing.write_fashion_slice(str(tmp_path / "idx"), 60, 20)
  fashion_mnist.prepare(str(tmp_path / "tfds"), str(tmp_path / "idx"))
  out, err = capfd.readouterr()
  assert out.startswith("Preparing Fashion-MNIST from") and len(out.strip().splitlines()) == 1
  assert "Downloading" not in out + err and "dataset_info" not in out + err and "%|" not in err
  fashion_mnist.prepare(str(tmp_path / "tfds"), str(tmp_path / "idx"))  # prepared: silent
  assert capfd.readouterr() == ("", "")
