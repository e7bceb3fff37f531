"""The data flags shared by the binaries (search, train, ablation, rank_check) and their DataConfig.

Each flag's help says what it allows. absl checks the bounds it can (`lower_bound`); the rest are
checked when the DataConfig is made (`data_config`), before any data is read or anything trained, and
refused as a `UserError` naming the value: here for what only the flags spell that way (0 for the native
resolution), in `DataConfig` for the rest, and by `sources.load` for a dataset or directory that is not
there.
"""

from absl import flags

from pcnas_tf.data import data_config as data_config_lib
from pcnas_tf import errors

flags.DEFINE_string("dataset", data_config_lib.FASHION_MNIST,
                    f"{data_config_lib.FASHION_MNIST}, {data_config_lib.IMAGE_FOLDER}, or the name of a tfds "
                    f"dataset prepared under --data_dir (e.g. cifar10).")
flags.DEFINE_string("data_dir", data_config_lib.DEFAULT_DATA_DIR,
                    "tfds data directory (Fashion-MNIST is prepared there on first use), or the root of an "
                    "image folder: <data_dir>/<split>/<label>/*.{jpg,jpeg,png}. Not empty.")
flags.DEFINE_integer("resolution", 0, "Square input side: >= 1 (and at least the network's total "
                     "stride), or 0 for the native size.")
flags.DEFINE_integer("channels", 3, "Input channels: 1 (colour images are converted to grey) or 3 (grey "
                     "images are repeated to RGB).")
flags.DEFINE_string("validation", "5000", "Validation carve-out from the training split: a count >= 1 or "
                    "a fraction in (0, 1) (written with a '.'), leaving at least one training image.")
flags.DEFINE_integer("seed", 0, "Seed (>= 0) of the data split and order, augmentation, initial weights "
                     "and (in a search) paths, completions and the Oracle.", lower_bound=0)
flags.DEFINE_boolean("deterministic", True, "Fixed data order (needed for exact resumption).")
flags.DEFINE_boolean("skip_corrupt", False, "Skip (and count) image-folder files that cannot be read or "
                     "decoded, instead of stopping at the first.")

FLAGS = flags.FLAGS
# The flags above and the DataConfig field each one sets.
NAMES = ("dataset", "data_dir", "resolution", "channels", "validation", "seed", "deterministic",
         "skip_corrupt")


def value(name: str):
  """The DataConfig value of data flag `name` (0 resolution means native; validation count or fraction).

  Raises:
    errors.UserError: for a negative --resolution or a --validation that is not a number.
  """
  raw = FLAGS[name].value
  if name == "resolution":
    if raw < 0:
      raise errors.UserError(f"Resolution {raw} (--resolution) must be a positive image side, or 0 for "
                             f"the native size.")
    return raw or None
  if name == "validation":
    try:
      return float(raw) if "." in raw else int(raw)
    except ValueError as error:
      raise errors.UserError(f"--validation={raw!r} is neither a count nor a fraction; give a count >= 1 "
                             f"(5000) or a fraction in (0, 1) (0.1).") from error
  return raw


def data_config() -> data_config_lib.DataConfig:
  """The DataConfig of the parsed data flags; raises `UserError` for a value it does not allow."""
  return data_config_lib.DataConfig(**{name: value(name) for name in NAMES})
