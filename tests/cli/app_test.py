"""Tests of how binaries end: a user error in one sentence (exit 2), Ctrl-C in one line (exit 130)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_MAIN = """
import sys
from pcnas_tf import errors
from pcnas_tf.cli import app
from pcnas_tf.training import epochs
raised = {"user": errors.UserError("Pool size P (--pool_size) is 0; it must be at least 1."),
          "ctrl_c": KeyboardInterrupt(), "saved": epochs.Interrupted("Interrupted at step 3; resume.")}
def main(argv):
  raise raised[sys.argv[1]]
app.run_main(main)
"""


@pytest.mark.parametrize("case, code, last_line", [
    ("user", 2, "error: Pool size P (--pool_size) is 0; it must be at least 1."),
    ("ctrl_c", 130, "Interrupted. Run the same command again to resume from the last checkpoint."),
    ("saved", 130, "Interrupted at step 3; resume."),
])
def test_a_binary_ends_in_one_line_without_a_traceback(case, code, last_line):
  result = subprocess.run([sys.executable, "-c", _MAIN, case], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
  assert result.returncode == code
  assert result.stderr.strip().splitlines()[-1] == last_line
  assert "Traceback" not in result.stderr
