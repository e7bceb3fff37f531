"""Tests of the supergraph: one trace for every path, single-path updates, shared weights."""

import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

from pcnas_tf.nn import mixop as mixop_lib
from pcnas_tf.nn import model as model_lib
from pcnas_tf.nn import ops
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import path_optimizer
from pcnas_tf.training import supergraph_trainer as trainer_lib

SPACE = space_lib.macro_space(0.125)
SHAPE = (8, 8, 3)
BATCH = 4


def _trainer(strategy=None, **kwargs):
  strategy = strategy or tf.distribute.OneDeviceStrategy("/cpu:0")
  return trainer_lib.SupergraphTrainer(SPACE, SHAPE, 10, strategy, BATCH, **kwargs)


def _iterator():
  images = tf.random.stateless_normal((BATCH * 8,) + SHAPE, seed=(1, 2))
  labels = tf.random.stateless_uniform((BATCH * 8,), (3, 4), 0, 10, tf.int32)
  return iter(tf.data.Dataset.from_tensor_slices((images, labels)).batch(BATCH).repeat())


def _random_path(rng):
  return [int(rng.integers(len(layer.choices))) for layer in SPACE.layers]


def _snapshot(trainer):
  values = {v.path: v.numpy().copy() for v in trainer.supergraph.variables}
  values.update({f"slot/{i}": s.numpy().copy() for i, s in enumerate(trainer.optimizer.slots)})
  return values


def test_one_trace_serves_200_paths():
  trainer, rng, iterator = _trainer(), np.random.default_rng(0), _iterator()
  images, labels = next(iterator)
  for _ in range(200):
    trainer.train_step(iterator, _random_path(rng))
  assert trainer.trace_count == 1
  for _ in range(200):
    trainer.evaluate(images, labels, _random_path(rng))
  assert trainer.trace_count == 2  # one train-step trace plus one eval-step trace


def _changed_candidates(before, after, offsets):
  """The candidates whose slice offsets[i]:offsets[i+1] of a packed vector changed."""
  return {i for i in range(len(offsets) - 1)
          if not np.array_equal(before[offsets[i]:offsets[i + 1]], after[offsets[i]:offsets[i + 1]])}


def test_step_changes_only_the_selected_path():
  trainer, rng, iterator = _trainer(weight_decay=1e-2), np.random.default_rng(1), _iterator()
  for _ in range(30):  # every operator gets momentum and moving statistics first
    trainer.train_step(iterator, _random_path(rng))
  path = [1, 2, 0, 1, 2, 1, 1, 2]
  before = _snapshot(trainer)
  trainer.train_step(iterator, path)
  after = _snapshot(trainer)
  slot_of = {id(v): f"slot/{i}" for i, v in enumerate(trainer.optimizer.variables)}
  for index, mixop in enumerate(trainer.supergraph.mixops):
    weights, statistics = mixop.packed_weights, mixop.packed_statistics
    slot = slot_of[id(weights)]
    # Weights, momentum and moving statistics change in the selected operator's slice, nowhere else.
    assert _changed_candidates(before[weights.path], after[weights.path], mixop.weight_offsets) == {
        path[index]}, weights.path
    assert _changed_candidates(before[slot], after[slot], mixop.weight_offsets) == {path[index]}
    assert _changed_candidates(before[statistics.path], after[statistics.path],
                               mixop.statistic_offsets) == {path[index]}, statistics.path
  shared = {v.path for layer in trainer.supergraph.shared_layers() for v in layer.trainable_variables}
  assert shared and all(not np.array_equal(before[p], after[p]) for p in shared)
  # The zero padding that ends each candidate's rows stays zero: it is in no candidate's layer.
  for mixop in trainer.supergraph.mixops:
    for variable, values, offsets in ((mixop.packed_weights, 0, mixop.weight_offsets),
                                      (mixop.packed_statistics, 1, mixop.statistic_offsets)):
      for choice in range(mixop.num_candidates):
        rows = variable.numpy()[offsets[choice]:offsets[choice + 1]]
        held = mixop.candidate_weights(choice)[values]
        assert np.count_nonzero(rows) == sum(np.count_nonzero(a) for a in held), (variable.path, choice)


def test_candidate_weights_follow_the_template_layout():
  trainer = _trainer()
  mixop = trainer.supergraph.mixops[0]
  x = trainer.supergraph._stem(tf.zeros((1,) + SHAPE), training=False)  # pylint: disable=protected-access
  templates = [ops.candidate_layer(SPACE, 0, op) for op in SPACE.layers[0].choices]
  for op in templates:
    op(x)
  assert mixop.candidate_names == [op.name for op in templates]
  for choice, template in enumerate(templates):
    trainable, statistics = mixop.candidate_weights(choice)
    assert [a.shape for a in trainable] == [tuple(v.shape) for v in template.trainable_variables]
    assert [a.shape for a in statistics] == [tuple(v.shape) for v in template.non_trainable_variables]
  # Weight decay covers exactly the kernels' entries of the packed weights, in PathSGD as in the mixop.
  kernels = sum(int(np.prod(v.shape)) for op in templates for v in op.trainable_variables
                if v.name in ("kernel", "depthwise_kernel"))
  assert kernels and mixop.decay_mask.sum() == kernels < mixop.decay_mask.size
  np.testing.assert_array_equal(path_optimizer.unpack_mask(trainer.optimizer.decay_masks[0]).numpy(),
                                mixop.decay_mask)


def test_weights_are_held_once_the_templates_dropped_after_packing():
  space = space_lib.small_space(0.1)
  x = tf.zeros((1, 8, 8, space.layer_input_channels()[1]))
  templates = [ops.candidate_layer(space, 1, op) for op in space.layers[1].choices]
  mixop = mixop_lib.MixOp(templates)
  alive = [weakref.ref(op) for op in templates]
  del templates
  mixop.pack(x)  # builds the templates on x, packs them, drops them
  gc.collect()
  assert alive and not any(ref() for ref in alive)  # every template, and so its variables, freed
  assert [v.path for v in mixop.variables] == [mixop.packed_weights.path, mixop.packed_statistics.path]


@pytest.mark.parametrize("space,se", [(space_lib.small_space(0.1), False),
                                      (space_lib.large_space(0.1), True)])
def test_every_candidate_computes_what_its_operator_computes(space, se):
  # Candidates alike share one branch that reshapes their rows at run time (mixop.run_structure):
  # each must compute exactly what its Keras operator computes, in both modes, statistics included.
  for index in (0, 1):  # a stride-2 layer whose Identity is a projection, a residual stride-1 layer
    x = tf.random.stateless_normal((2, 8, 8, space.layer_input_channels()[index]), seed=(index, 1))
    candidates = [ops.candidate_layer(space, index, op, se) for op in space.layers[index].choices]
    for op in candidates:
      op(x)
    mixop = mixop_lib.MixOp(candidates)
    mixop.pack()
    assert len(mixop.structures) < len(candidates)
    statistics = np.random.default_rng(index).uniform(0.5, 2.0, mixop.packed_statistics.shape)
    mixop.packed_statistics.assign(statistics.astype(np.float32))
    run = tf.function(lambda x, choice, training: mixop(x, choice, training=training))
    for choice, op in enumerate(candidates):
      trainable, moving = mixop.candidate_weights(choice)
      for training in (False, True):
        expected, new_moving = op.stateless_call(trainable, moving, x, training=training)
        np.testing.assert_allclose(run(x, tf.constant(choice), training), expected, atol=1e-5,
                                   err_msg=f"{op.name} training={training}")
      for got, want in zip(mixop.candidate_weights(choice)[1], new_moving):
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"{op.name} moving statistics")


def test_inherited_weights_reproduce_the_supergraph_path():
  trainer, rng, iterator = _trainer(), np.random.default_rng(2), _iterator()
  for _ in range(20):
    trainer.train_step(iterator, _random_path(rng))
  images, _ = next(iterator)
  for _ in range(3):
    path = _random_path(rng)
    arch = SPACE.arch_from_indices(path)
    model = model_lib.build_model(arch, SPACE, SHAPE, 10)
    model_lib.inherit_weights(trainer.supergraph, arch, model)
    expected = trainer.supergraph(images, tf.constant(path), training=False)
    np.testing.assert_allclose(model(images, training=False), expected, atol=1e-5)


def test_mirrored_replicas_stay_in_sync_and_match_one_device(tmp_path):
  # Two logical CPUs must be configured before TensorFlow starts, so this runs in a fresh process.
  import subprocess
  import sys
  script = tmp_path / "mirrored.py"
  script.write_text(_MIRRORED_SCRIPT)
  result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=str(tmp_path), env={**__import__("os").environ,
                                                  "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "replicas=2 in_sync=True max_diff_vs_one_device=" in result.stdout
  # Float reduction order differs between one and two replicas (measured: 1.4e-5 after two steps),
  # relative to 1 + |value| as moving variances are large.
  assert float(result.stdout.split("max_diff_vs_one_device=")[1].split()[0]) < 1e-4


_MIRRORED_SCRIPT = '''
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.training import supergraph_trainer as trainer_lib
space = space_lib.macro_space(0.125)
# Each global batch of 8 is two copies of 4 images, so per-replica BN statistics equal the global ones
# and the two-replica run must compute what one device computes.
half_images = tf.random.stateless_normal((4, 4, 8, 8, 3), seed=(1, 2))
half_labels = tf.random.stateless_uniform((4, 4), (3, 4), 0, 10, tf.int32)
images = tf.reshape(tf.concat([half_images, half_images], axis=1), (32, 8, 8, 3))
labels = tf.reshape(tf.concat([half_labels, half_labels], axis=1), (32,))
# Two steps: the second uses momentum. Later steps on 4-image BN batches amplify float rounding ~10x a step.
paths = [[int(c) for c in np.random.default_rng(s).integers(0, 3, 8)] for s in range(2)]

def run(strategy):
  keras.utils.set_random_seed(0)
  trainer = trainer_lib.SupergraphTrainer(space, (8, 8, 3), 10, strategy, 8, learning_rate=0.01)
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  for path in paths:
    trainer.train_step(iterator, path)
  return trainer

mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
in_sync = all(np.array_equal(v.value.values[0].numpy(), v.value.values[1].numpy())
              for v in mirrored.supergraph.variables)
single = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
diff = max(float((np.abs(a.numpy() - b.numpy()) / (1 + np.abs(b.numpy()))).max())
           for a, b in zip(mirrored.supergraph.variables, single.supergraph.variables))
print(f"replicas={mirrored.strategy.num_replicas_in_sync} in_sync={in_sync} max_diff_vs_one_device={diff}")
'''


def test_decay_masks_packed_32_to_an_int32_read_back_exactly_row_by_row():
  mask = np.random.default_rng(0).random((5, mixop_lib.ROW)) < 0.5
  mask[2, 31] = mask[3, :] = True  # bit 31: a negative word
  words = path_optimizer.pack_mask(mask)
  assert words.dtype == np.int32 and words.shape == (5, mixop_lib.ROW // 32)
  np.testing.assert_array_equal(path_optimizer.unpack_mask(tf.constant(words)).numpy(), mask)
  rows = tf.constant([3, 0])  # as the optimizer reads them: some rows, in any order
  np.testing.assert_array_equal(path_optimizer.unpack_mask(tf.gather(tf.constant(words), rows)).numpy(),
                                mask[[3, 0]])
  assert path_optimizer.pack_mask(np.zeros((0, mixop_lib.ROW), bool)).shape == (0, mixop_lib.ROW // 32)

