"""The optimizer's flags, defined once for every binary that trains (search, train, ground truth)."""

from absl import flags

from pcnas_tf.training import optimizer_config

_DEFAULTS = optimizer_config.OptimizerConfig()
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Initial learning rate (cosine decay; > 0).")
flags.DEFINE_float("final_learning_rate", _DEFAULTS.final_learning_rate,
                   "Learning rate at the end of training (> 0, at most --learning_rate).")
flags.DEFINE_float("momentum", _DEFAULTS.momentum, "Nesterov momentum (0 <= value < 1).")
flags.DEFINE_float("weight_decay", _DEFAULTS.weight_decay,
                   "L2 weight on convolution and dense kernels (0 <= value <= 1).")
FLAGS = flags.FLAGS


def optimizer_config_from_flags() -> optimizer_config.OptimizerConfig:
  return optimizer_config.OptimizerConfig(
      learning_rate=FLAGS.learning_rate, final_learning_rate=FLAGS.final_learning_rate,
      momentum=FLAGS.momentum, weight_decay=FLAGS.weight_decay)
