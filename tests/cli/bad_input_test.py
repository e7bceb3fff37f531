"""Bad input to every binary, as a new user would give it: one sentence naming the value and what is
allowed, a non-zero exit, no traceback, and nothing written (`export_main` has its own table in
tests/export). Flags with an absl bound are refused by absl's parser (exit 1, its own sentence)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (binary, flags, what the last line of stderr holds, exit code). OUT is a path under the test's
# temporary directory that the run must not create.
CASES = [
    ("search_main", ["--pool_size=0"], "error: Pool size P (--pool_size) is 0; it must be at least 1.", 2),
    ("search_main", ["--learning_rate=-1"], "error: Learning rate (--learning_rate) is -1.0; it must be > 0.",
     2),
    ("search_main", ["--budget=150%"], "error: Budget '150%' is outside the fractions 0 to 1", 2),
    ("search_main", ["--budget=1.5"], "error: Budget '1.5' is outside the fractions 0 to 1", 2),
    ("search_main", ["--checkpoint_every=0"], "(--checkpoint_every) is 0; it must be at least 1", 2),
    ("search_main", ["--calibration_archs=-1"], "(--calibration_archs) is -1; it must be at least 0", 2),
    ("search_main", ["--collective_timeout_s=0"], "flag --collective_timeout_s=0: 0 is not", 1),
    ("train_main", ["--arch=01221020", "--epochs=0"], "error: Epochs (--epochs) is 0; it must be at least 1",
     2),
    ("train_main", ["--arch=01221020", "--momentum=1"], "Momentum (--momentum) is 1.0; allowed: 0.0 <= "
     "value < 1.0.", 2),
    ("train_main", ["--arch=01221020", "--label_smoothing=1"], "Label smoothing (--label_smoothing) is 1.0",
     2),
    ("build_latency_table_main", ["--batch=0"], "flag --batch=0: 0 is not", 1),
    ("build_latency_table_main", ["--backend=bogus"], "flag --backend=bogus: value should be one of", 1),
    ("build_latency_table_main", ["--channels=2"], "flag --channels=2: value should be one of <1|3>", 1),
    ("ablation_main", ["--standalone_epochs=-1"], "(--standalone_epochs) is -1; it must be at least 0", 2),
    ("rank_check_main", ["--pcnas_dir=OUT"], "holds no search_result.json; give the work directory of a "
     "finished search", 2),
    ("ground_truth_main", ["--shard=2", "--shards=2"], "error: --shard=2 does not exist with --shards=2; "
     "use 0 <= shard < shards.", 2),
    ("ground_truth_main", ["--steps_per_epoch=0"], "(--steps_per_epoch) is 0; it must be at least 1", 2),
    ("pipeline_main", ["--retrain_learning_rate=-1"], "Learning rate (--retrain_learning_rate) is -1.0", 2),
    ("pipeline_main", ["--latency_runs=0"], "error: Latency runs (--latency_runs) is 0; it must be at least 1.",
     2),
    ("eval_worker_main", ["--work_dir=OUT"], "error: KERASTUNER_ORACLE_IP is not set; a worker needs "
     "KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT of its chief.", 2),
    ("eval_worker_main", ["--poll_interval=0"], "flag --poll_interval=0: 0.0 is not number >= 0.001", 1),
]
# Where each binary would write: it must not be created by a refused run.
_OUTPUT_FLAGS = {"search_main": ["--work_dir=OUT"], "train_main": ["--work_dir=OUT"],
                 "build_latency_table_main": ["--output=OUT/t.json"], "ablation_main": ["--work_dir=OUT"],
                 "rank_check_main": ["--work_dir=OUT"],
                 "ground_truth_main": ["--output=OUT/gt.json", "--work_root=OUT/scratch"],
                 "pipeline_main": ["--work_dir=OUT"], "eval_worker_main": []}


@pytest.mark.parametrize("binary, args, last_line, code", CASES,
                         ids=[f"{c[0]}:{' '.join(c[1])}" for c in CASES])
def test_bad_input_is_one_sentence_and_writes_nothing(binary, args, last_line, code, tmp_path):
  out = str(tmp_path / "out")
  argv = [a.replace("OUT", out) for a in _OUTPUT_FLAGS[binary] + args]
  result = subprocess.run([sys.executable, "-m", f"pcnas_tf.{binary}", *argv], capture_output=True,
                          text=True, cwd=str(tmp_path), timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"})
  lines = result.stderr.strip().splitlines()
  fatal = [line for line in lines if "Flags parsing error" in line]  # absl's line, before its help hint
  assert result.returncode == code, result.stderr[-2000:]
  assert last_line in (fatal[-1] if code == 1 else lines[-1]), result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert not os.path.exists(out)
