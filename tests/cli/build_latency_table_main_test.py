"""Tests of the table-building binary: bad input exits non-zero with one sentence, no traceback."""

import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.getcwd()}


def _run(*flags):
  return subprocess.run([sys.executable, "-m", "pcnas_tf.build_latency_table_main", *flags],
                        capture_output=True, text=True, env=ENV, timeout=120, check=False)


@pytest.mark.parametrize("flags, message", [
    (("--space=nope", "--output=unused.json"), "Unknown search space 'nope'; allowed:"),
    (("--space=nope",), "Give exactly one of --output and --cache_dir.")])
def test_bad_input_exits_with_one_line(flags, message):
  result = _run(*flags)
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert result.returncode == 2 and len(errors) == 1 and message in errors[0]
  assert "Traceback" not in result.stderr


def test_corrupt_output_file_is_reported(tmp_path):
  path = tmp_path / "table.json"
  path.write_text("{truncated")
  result = _run("--space=macro", "--width=0.125", "--resolution=8", f"--output={path}")
  assert result.returncode == 2 and "is corrupt" in result.stderr.splitlines()[-1]
