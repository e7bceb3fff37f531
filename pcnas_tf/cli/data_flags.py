"""The data flags shared by the binaries (search, train, ablation, rank_check) and their DataConfig."""

from absl import flags

from pcnas_tf.data import data_config as data_config_lib
from pcnas_tf import errors

flags.DEFINE_string("dataset", "fashion_mnist", "fashion_mnist, image_folder, or a prepared tfds name.")
flags.DEFINE_string("data_dir", data_config_lib.DEFAULT_DATA_DIR, "tfds data directory or image-folder root.")
flags.DEFINE_integer("resolution", 0, "Square input side; 0 for the native size.")
flags.DEFINE_integer("channels", 3, "Input channels (grey images are repeated to RGB for 3).")
flags.DEFINE_string("validation", "5000", "Validation carve-out from the training split: a count or a "
                    "fraction.")
flags.DEFINE_integer("seed", 0, "Seed of the data split and order, augmentation, initial weights and "
                     "(in a search) paths, completions and the Oracle.")
flags.DEFINE_boolean("deterministic", True, "Fixed data order (needed for exact resumption).")

FLAGS = flags.FLAGS
# The flags above and the DataConfig field each one sets.
NAMES = ("dataset", "data_dir", "resolution", "channels", "validation", "seed", "deterministic")


def value(name: str):
  """The DataConfig value of data flag `name` (0 resolution means native; validation count or fraction)."""
  raw = FLAGS[name].value
  if name == "resolution":
    return raw or None
  if name == "validation":
    try:
      return float(raw) if "." in raw else int(raw)
    except ValueError as error:
      raise errors.UserError(f"--validation={raw!r} is neither a count nor a fraction.") from error
  return raw


def data_config() -> data_config_lib.DataConfig:
  """The DataConfig of the parsed data flags."""
  return data_config_lib.DataConfig(**{name: value(name) for name in NAMES})
