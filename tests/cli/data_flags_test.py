"""Tests of the data flags: each maps to its DataConfig field, and a bad value is refused in one sentence
naming it, in process and through `python -m pcnas_tf.train_main` (before anything is trained)."""

import pytest
from absl import flags

from pcnas_tf import errors
from pcnas_tf.cli import data_flags
from tests import helpers as testing


@pytest.fixture
def parse():
  def parse_flags(*argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train", *argv])
    return data_flags.data_config()
  yield parse_flags
  flags.FLAGS.unparse_flags()


def test_defaults_and_the_native_resolution(parse):
  config = parse()
  assert config.resolution is None and not config.skip_corrupt and config.validation == 5000
  assert parse("--resolution=0").resolution is None and parse("--resolution=28").resolution == 28


def test_skip_corrupt_flag_sets_the_config(parse):
  assert parse("--skip_corrupt").skip_corrupt
  assert not parse("--noskip_corrupt").skip_corrupt


def test_negative_resolution_names_the_flag_and_its_native_value(parse):
  with pytest.raises(errors.UserError, match=r"^Resolution -28 \(--resolution\) must be a positive image "
                     r"side, or 0 for the native size\.$"):
    parse("--resolution=-28")


@pytest.mark.parametrize("argv, message", [
    (("--channels=2",), r"^Channels 2 is not allowed; allowed: 1 \(grey\) or 3 \(RGB\)\.$"),
    (("--validation=0",), r"^Validation size 0 must be > 0"),
    (("--validation=1.5",), r"^Validation fraction 1.5 must be in \(0, 1\)\.$"),
    (("--validation=many",), r"^--validation='many' is neither a count nor a fraction; give a count >= 1 "
                                 r"\(5000\) or a fraction in \(0, 1\) \(0\.1\)\.$"),
    (("--dataset=",), r"^Dataset name is empty"),
    (("--data_dir=",), r"^Data directory is empty"),
])
def test_values_outside_the_allowed_set_are_user_errors(parse, argv, message):
  with pytest.raises(errors.UserError, match=message):
    parse(*argv)


def test_negative_seed_is_refused_by_the_flag_parser(parse):
  with pytest.raises(flags.IllegalFlagValueError, match=r"--seed=-1: -1 is not a non-negative integer"):
    parse("--seed=-1")


ARCH = ("--arch=00000000", "--space=macro", "--width=0.25")


@pytest.mark.parametrize("argv, sentence, code", [
    (("--resolution=-28",), "error: Resolution -28 (--resolution) must be a positive image side, or 0 "
     "for the native size.", 2),
    (("--channels=2",), "error: Channels 2 is not allowed; allowed: 1 (grey) or 3 (RGB).", 2),
    (("--validation=0.0",), "error: Validation fraction 0.0 must be in (0, 1).", 2),
    (("--seed=-1",), "FATAL Flags parsing error: flag --seed=-1: -1 is not a non-negative integer", 1),
])
def test_train_main_refuses_bad_data_flags_before_training(tmp_path, argv, sentence, code):
  work_dir = tmp_path / "run"
  returncode, last, stderr = testing.run_binary(
      "pcnas_tf.train_main", *ARCH, f"--work_dir={work_dir}", *argv)
  assert (returncode, last) == (code, sentence), stderr[-3000:]
  assert "Traceback" not in stderr
  assert not work_dir.exists()
