"""Tests of potential evaluation: prefix reuse is exact, and evaluation changes no weights."""

import numpy as np
import tensorflow as tf

from pcnas_tf.searcher import pool as pool_lib
from pcnas_tf.searcher import potential as potential_lib
from pcnas_tf.nn import supergraph as supergraph_lib
from tests import helpers as testing

SPACE = testing.tiny_space()
NUM_CHOICES = tuple(len(layer.choices) for layer in SPACE.layers)


def _batches(count=3, size=16):
  images = tf.random.stateless_normal((count, size, 8, 8, 3), seed=(5, 6))
  labels = tf.random.stateless_uniform((count, size), (7, 8), 0, 10, tf.int32)
  return [(images[i], labels[i]) for i in range(count)]


def _trained_supergraph():
  supergraph = supergraph_lib.Supergraph(SPACE, (8, 8, 3), 10)
  rng = np.random.default_rng(0)
  for images, _ in _batches():  # moving statistics away from their initial values
    for _ in range(3):
      path = pool_lib.complete((), NUM_CHOICES, rng)
      supergraph(images, tf.constant(path), training=True)
  return supergraph


def _completions(members, samples=5):
  rng = np.random.default_rng(1)
  candidates = pool_lib.extend(members, NUM_CHOICES)
  return {c: [pool_lib.complete(c, NUM_CHOICES, rng) for _ in range(samples)] for c in candidates}


def test_prefix_reuse_gives_the_naive_potentials():
  supergraph, batches = _trained_supergraph(), _batches()
  for bn_mode in potential_lib.BN_MODES:
    reuse = potential_lib.PotentialEvaluator(supergraph, batches, bn_mode, True)
    plain = potential_lib.PotentialEvaluator(supergraph, batches, bn_mode, False)
    for members in ([], [(1,), (2,)], [(1, 0), (2, 2)]):
      completions = _completions(members)
      reused, naive = reuse.accuracies(completions), plain.accuracies(completions)
      assert reused.keys() == naive.keys()
      for candidate in reused:
        np.testing.assert_allclose(reused[candidate], naive[candidate], atol=1e-6)


def test_completion_j_is_scored_on_batch_j_mod_k():
  supergraph, batches = _trained_supergraph(), _batches()
  path = (1, 2, 1)
  evaluator = potential_lib.PotentialEvaluator(supergraph, batches, "moving")
  accuracies = evaluator.accuracies({path: [path] * 4})[path]
  expected = []
  for images, labels in batches + batches[:1]:
    logits = supergraph(images, tf.constant(path), training=False)
    expected.append(float(np.mean(np.argmax(logits, -1) == labels.numpy())))
  np.testing.assert_allclose(accuracies, expected, atol=1e-6)


def test_batch_statistics_differ_from_moving_averages_and_change_no_variable():
  supergraph, batches = _trained_supergraph(), _batches()
  before = [v.numpy().copy() for v in supergraph.variables]
  completions = _completions([(1,), (2,)], samples=8)
  batch = potential_lib.PotentialEvaluator(supergraph, batches, "batch").potentials(completions)
  moving = potential_lib.PotentialEvaluator(supergraph, batches, "moving").potentials(completions)
  assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, supergraph.variables))
  assert batch != moving


def test_candidate_without_completions_has_nan_potential():
  supergraph = _trained_supergraph()
  potentials = potential_lib.PotentialEvaluator(supergraph, _batches()).potentials({(0,): []})
  assert np.isnan(potentials[(0,)])
