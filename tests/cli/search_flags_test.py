"""Tests of the search flagfiles and the flags-to-config step."""

import os

import pytest
from absl import flags

from pcnas_tf.cli import search_flags

FLAGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "flags")


@pytest.fixture
def parse():
  def parse_flagfile(name, *extra):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["search", f"--flagfile={os.path.join(FLAGS_DIR, name)}", *extra])
    return search_flags.config_from_flags().validate()
  yield parse_flagfile
  flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("name", ["demo.cfg", "cifar10.cfg", "imagenet_small.cfg", "imagenet_large.cfg"])
def test_every_search_flagfile_gives_a_valid_config(parse, name):
  config = parse(name)
  assert config.pool_size >= 1 and config.num_samples >= 1


def test_imagenet_flagfiles_carry_the_papers_settings(parse):
  for name, space, budget in (("imagenet_small.cfg", "small", "10ms"), ("imagenet_large.cfg", "large", "11ms")):
    config = parse(name)
    assert (config.space, config.budget, config.latency_batch, config.latency_backend) == (
        space, budget, 16, "tensorrt")
    assert (config.pool_size, config.num_samples, config.warmup_epochs, config.interval_epochs) == (5, 900, 100, 5)
    assert (config.batch_size, config.optimizer.learning_rate, config.optimizer.final_learning_rate) == (
        512, 0.1, 5e-4)
    assert (config.optimizer.momentum, config.optimizer.weight_decay, config.data.validation) == (
        0.9, 1e-4, 50000)


def test_command_line_flags_override_the_flagfile(parse):
  config = parse("demo.cfg", "--pool_size=3", "--validation=0.1")
  assert config.pool_size == 3 and config.data.validation == 0.1
