"""Bad input to the export binary, as a table: each row runs `export.export_main` in a subprocess and
checks that it ends with one sentence naming the bad value, a non-zero exit, no traceback, and no output.

Rows rejected by absl's own flag checks (bounds) exit 1 with absl's sentence, followed by its fixed hint
line; the project's own checks (`UserError`) print `error: <sentence>` last and exit 2.
"""

import pytest

from tests import helpers as testing


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """{"dir": a directory, "truncated": a .keras archive with truncated weights, "missing": no file}."""
  root = tmp_path_factory.mktemp("models")
  (root / "run").mkdir()
  return {"dir": str(root / "run"), "missing": str(root / "none.keras"),
          "truncated": testing.write_truncated_keras(root / "truncated.keras")}


@pytest.mark.parametrize("model, flags, sentence, code", [
    ("dir", (), "error: Model file '{dir}' is a directory; expected a .keras file (the model.keras a "
     "training writes).", 2),
    ("truncated", (), "error: Model file '{truncated}' is damaged or incomplete (its weights cannot be "
     "read); export or train it again.", 2),
    ("missing", ("--space=macro", "--width=0"), "error: Width multiplier 0.0 must be > 0.", 2),
    ("missing", ("--min_top1_agreement=nan",), "error: Minimum top-1 agreement nan "
     "(--min_top1_agreement) must be in [0, 1].", 2),
    ("missing", ("--min_top1_agreement=1.5",), "FATAL Flags parsing error: flag "
     "--min_top1_agreement=1.5: 1.5 is not a number in the range [0, 1]", 1),
    ("missing", ("--parity_images=0",), "FATAL Flags parsing error: flag --parity_images=0: 0 is not a "
     "positive integer", 1),
    ("missing", ("--representative_images=0",), "FATAL Flags parsing error: flag "
     "--representative_images=0: 0 is not a positive integer", 1),
    ("missing", ("--latency_runs=-1",), "FATAL Flags parsing error: flag --latency_runs=-1: -1 is not a "
     "positive integer", 1),
])
def test_bad_input_ends_in_one_sentence_and_writes_nothing(models, tmp_path, model, flags, sentence,
                                                            code):
  out = tmp_path / "out"
  returncode, last, stderr = testing.run_binary("export.export_main", f"--model={models[model]}",
                                                f"--output_dir={out}", *flags)
  assert (returncode, last) == (code, sentence.format(**models)), stderr[-3000:]
  assert "Traceback" not in stderr
  assert not out.exists()
