"""Tests of stand-alone models: `.keras` round trips, parameter counts, inherited weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcnas_tf.space import cost
from pcnas_tf.nn import model as model_lib
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.nn import supergraph as supergraph_lib

MACRO = space_lib.macro_space(0.125)
SMALL = space_lib.small_space(0.125)
# (space, input shape): the small space strides by 32, so it needs 32x32 inputs.
CASES = [(MACRO, (8, 8, 3)), (SMALL, (32, 32, 1))]
NUM_CLASSES = 10


def _random_arch(space, seed):
  rng = np.random.default_rng(seed)
  return space.arch_from_indices([int(rng.integers(len(layer.choices))) for layer in space.layers])


def _randomise(variables, seed):
  """Gives every variable random values (positive for BN variances), so copies cannot pass by chance."""
  rng = np.random.default_rng(seed)
  for variable in variables:
    values = rng.normal(0.0, 0.3, variable.shape)
    if "variance" in variable.path:
      values = np.abs(values) + 0.5
    variable.assign(values.astype(variable.dtype))


def _images(shape, count=3):
  return tf.random.stateless_normal((count,) + shape, seed=(5, 6))


@pytest.mark.parametrize("se", [False, True])
@pytest.mark.parametrize("space, shape", CASES, ids=lambda c: getattr(c, "name", None))
def test_saved_model_reloads_with_the_same_outputs(tmp_path, space, shape, se):
  arch = _random_arch(space, seed=1)
  model = model_lib.build_model(arch, space, shape, NUM_CLASSES, se=se)
  _randomise(model.weights, seed=2)
  path = str(tmp_path / "model.keras")
  model.save(path)
  reloaded = keras.saving.load_model(path)
  images = _images(shape)
  assert [w.path for w in reloaded.weights] == [w.path for w in model.weights]
  np.testing.assert_allclose(reloaded(images, training=False), model(images, training=False),
                             atol=1e-6)


@pytest.mark.parametrize("se", [False, True])
@pytest.mark.parametrize("space, shape", CASES, ids=lambda c: getattr(c, "name", None))
def test_parameter_count_is_the_cost_models(space, shape, se):
  for seed in range(2):
    arch = _random_arch(space, seed)
    model = model_lib.build_model(arch, space, shape, NUM_CLASSES, se=se)
    assert model.count_params() == cost.arch_cost(arch, space, shape, NUM_CLASSES, se).params, arch


def test_identity_layers_and_a_headless_space_round_trip(tmp_path):
  # Shape-keeping Identity ops have no sub-layers, and a space without a head conv has a bare head.
  layers = (space_lib.LayerSpec(8, 1, ("Identity", "MBConv_3_3")),) * 2
  space = space_lib.SearchSpace("bare", 8, 1, None, layers, 0, "relu")
  model = model_lib.build_model(("Identity", "Identity"), space, (8, 8, 3), NUM_CLASSES, se=True)
  _randomise(model.weights, seed=3)
  model.save(str(tmp_path / "bare.keras"))
  reloaded = keras.saving.load_model(str(tmp_path / "bare.keras"))
  np.testing.assert_allclose(reloaded(_images((8, 8, 3))), model(_images((8, 8, 3))), atol=1e-6)


@pytest.mark.parametrize("se", [False, True])
def test_inherited_weights_compute_the_supergraph_path(se):
  supergraph = supergraph_lib.Supergraph(MACRO, (8, 8, 3), NUM_CLASSES, se=se)
  _randomise(supergraph.variables, seed=4)
  images = _images((8, 8, 3))
  for seed in range(2):
    arch = _random_arch(MACRO, seed)
    model = model_lib.build_model(arch, MACRO, (8, 8, 3), NUM_CLASSES, se=se)
    model_lib.inherit_weights(supergraph, arch, model)
    expected = supergraph(images, tf.constant(MACRO.indices(arch)), training=False)
    np.testing.assert_allclose(model(images, training=False), expected, atol=1e-5)


def test_inheriting_into_a_model_of_another_architecture_is_refused():
  supergraph = supergraph_lib.Supergraph(MACRO, (8, 8, 3), NUM_CLASSES)
  arch, other = ("MBConv_3_3",) * MACRO.num_layers, ("MBConv_6_5",) * MACRO.num_layers
  model = model_lib.build_model(other, MACRO, (8, 8, 3), NUM_CLASSES)
  with pytest.raises(ValueError, match="was not built for architecture"):
    model_lib.inherit_weights(supergraph, arch, model)
