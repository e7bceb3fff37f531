"""Tests of potential evaluation: sharing is exact and computes each node once, evaluation changes no
weights, and every piece is traced once."""

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


def test_sharing_gives_the_naive_accuracies_exactly_in_both_bn_modes():
  # Exact, not close: a shared node runs the same ops on the same input as the naive forward pass.
  # Accuracies are counts of argmax hits, so equal logits to the last bit are not needed; a hit can
  # only differ where two logits tie within rounding, which random weights on 16 images do not meet.
  supergraph, batches = _trained_supergraph(), _batches()
  for bn_mode in potential_lib.BN_MODES:
    reuse = potential_lib.PotentialEvaluator(supergraph, batches, bn_mode, True)
    plain = potential_lib.PotentialEvaluator(supergraph, batches, bn_mode, False)
    for members in ([], [(1,), (2,)], [(1, 0), (2, 2)]):
      completions = _completions(members, samples=7)  # repeated paths: 7 draws of few completions
      reused, naive = reuse.accuracies(completions), plain.accuracies(completions)
      assert reused.keys() == naive.keys()
      for candidate in reused:
        assert reused[candidate] == naive[candidate], (bn_mode, candidate)


def _distinct_nodes(completions, num_batches):
  """Distinct (batch, path prefix) nodes below the stem, counted by brute force."""
  nodes = set()
  for paths in completions.values():
    for j, path in enumerate(paths):
      nodes.update((j % num_batches, tuple(path[:depth])) for depth in range(1, len(path) + 1))
  return nodes


def test_every_distinct_node_is_computed_once_and_a_repeated_path_scored_once():
  supergraph, batches = _trained_supergraph(), _batches()
  evaluator = potential_lib.PotentialEvaluator(supergraph, batches, "batch")
  completions = _completions([(1,), (2,)], samples=9)  # 3 x 3 candidates, 3 completions each
  evaluator.accuracies(completions)
  work = evaluator.last_work
  pairs = {(j % len(batches), tuple(p)) for paths in completions.values() for j, p in enumerate(paths)}
  assert work.completions == 9 * len(completions) > work.distinct == len(pairs)  # repeats were drawn
  assert work.stems == len(batches)
  assert work.mixops == len(_distinct_nodes(completions, len(batches)))
  # Below its last branching node a path runs as one call, so fewer calls than nodes.
  assert work.calls < work.stems + work.mixops
  # At the last layer every node is a leaf reached from a branching node: one call per node.
  evaluator.accuracies(_completions([(1, 0), (2, 2)], samples=2))
  assert evaluator.last_work.calls == evaluator.last_work.stems + evaluator.last_work.mixops
  naive = potential_lib.PotentialEvaluator(supergraph, batches, "batch", reuse_prefix=False)
  naive.accuracies(completions)
  assert naive.last_work.calls == naive.last_work.stems == work.completions
  assert naive.last_work.mixops == work.completions * SPACE.num_layers


def test_each_piece_is_traced_once_across_intervals():
  supergraph, batches = _trained_supergraph(), _batches()
  evaluator = potential_lib.PotentialEvaluator(supergraph, batches, "batch")
  for members in ([], [(1,), (2,)], [(1, 0), (2, 2)], [(0, 1)]):
    evaluator.accuracies(_completions(members, samples=6))
  functions = [evaluator._stem, *evaluator._mixop_fns, *evaluator._suffixes]
  assert all(f.experimental_get_tracing_count() <= 1 for f in functions)
  assert evaluator.traces() <= len(functions)


def test_after_tracing_every_piece_scoring_traces_nothing_and_gives_the_same_accuracies():
  supergraph, batches = _trained_supergraph(), _batches()
  traced, plain = (potential_lib.PotentialEvaluator(supergraph, batches, "batch") for _ in range(2))
  traced.trace_all()
  pieces = traced.traces()
  assert pieces == 2 + 2 * len(supergraph.mixops)  # the whole path, the stem, each mixop and suffix
  for members in ([], [(1,), (2,)], [(1, 0), (2, 2)]):
    completions = _completions(members, samples=6)
    assert traced.accuracies(completions) == plain.accuracies(completions)
  assert traced.traces() == pieces


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
