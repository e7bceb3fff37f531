"""Tests of checkpoints: arrays by name, restored whatever their order, refused when they do not fit."""

import os

import numpy as np
import pytest
import tensorflow as tf

from pcnas_tf.distribute import strategy as strategy_lib
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import checkpoint
from pcnas_tf.training import supergraph_trainer as trainer_lib


def _trainer(space):
  return trainer_lib.SupergraphTrainer(space, (8, 8, 3), 10, strategy_lib.make_strategy("one_device"), 4)


def test_arrays_are_restored_by_name_whatever_their_order(tmp_path):
  variables = [tf.Variable(np.full((2,), i, np.float32), name=f"v{i}") for i in range(3)]
  arrays = checkpoint.arrays_of(checkpoint.named(variables, "model/"))
  reordered = dict(reversed(list({k: v + 10 for k, v in arrays.items()}.items())))
  checkpoint.save(str(tmp_path), 1, reordered, {"epoch": 1})
  loaded, state = checkpoint.latest(str(tmp_path))
  checkpoint.assign(checkpoint.named(variables, "model/"), loaded, str(tmp_path), "these variables")
  assert state == {"epoch": 1}
  assert [v.numpy()[0] for v in variables] == [10, 11, 12]


def test_a_supergraph_of_another_width_is_refused_and_nothing_assigned():
  trainer, other = _trainer(space_lib.macro_space(0.5)), _trainer(space_lib.macro_space(0.25))
  before = [v.numpy() for v in trainer.supergraph.variables]
  arrays = checkpoint.arrays_of(checkpoint.named(other.supergraph.variables, checkpoint.SUPERGRAPH))
  pairs = checkpoint.named(trainer.supergraph.variables, checkpoint.SUPERGRAPH)
  with pytest.raises(checkpoint.CheckpointMismatchError, match="does not fit this supergraph: it has "
                     "shape .* which has shape"):
    checkpoint.assign(pairs, arrays, "somewhere", "this supergraph")
  for variable, value in zip(trainer.supergraph.variables, before):
    np.testing.assert_array_equal(variable.numpy(), value)
  own = {name: value + 1 for name, value in checkpoint.arrays_of(pairs).items()}
  checkpoint.assign(pairs, own, "here", "this supergraph")
  np.testing.assert_array_equal(trainer.supergraph.variables[0].numpy(), before[0] + 1)


def test_a_missing_array_is_named():
  variable = tf.Variable(np.zeros(2, np.float32), name="kernel")
  with pytest.raises(checkpoint.CheckpointMismatchError, match="has no array 'model/kernel'"):
    checkpoint.assign(checkpoint.named([variable], "model/"), {"model/bias": np.zeros(2)}, "x", "it")


def test_a_checkpoint_of_positional_arrays_is_refused_in_one_sentence(tmp_path):
  path = checkpoint.path_of(str(tmp_path), 1)
  os.makedirs(path)
  np.savez(os.path.join(path, "variables.npz"), np.zeros(2), np.ones(3))  # the old format: arr_0, arr_1
  with open(os.path.join(path, "state.json"), "w") as f:
    f.write("{}")
  with pytest.raises(checkpoint.CheckpointMismatchError, match="older pcnas_tf, which stored arrays by "
                     "position; start afresh"):
    checkpoint.latest(str(tmp_path))


def test_two_variables_of_one_name_cannot_be_saved():
  twins = [tf.Variable(0.0, name="same"), tf.Variable(1.0, name="same")]
  with pytest.raises(ValueError, match="distinct names"):
    checkpoint.arrays_of(checkpoint.named(twins, ""))
