"""Potentials of candidate partial models on a trained supergraph (paper Algorithm 1).

The potential of a candidate is the mean accuracy of its sampled completions, each on one validation
mini-batch. Completion j of a candidate uses batch `j % K` of a fixed set of K batches, which makes work
shareable and exact to reuse:

  * every candidate extending the same pool member shares the member's prefix (stem + mixops < l):
    its activations are computed once per batch;
  * each candidate then adds one mixop, once per batch;
  * each completion runs only the suffix (mixops > l and the head) from those cached activations.

Cached prefixes are exact because a layer's output depends only on its input, in both BN modes:
  * `batch`: each layer normalises with the statistics of the evaluation batch (the default). The
    moving averages of single-path training mix the statistics of many paths, so they fit no single
    path well; the batch's own statistics do, at no cost.
  * `moving`: the supergraph's moving averages (plain inference mode).
"""

import collections
import functools
from typing import Sequence

import numpy as np
import tensorflow as tf

from pcnas_tf.data import batches as batches_lib

BN_MODES = ("batch", "moving")


class PotentialEvaluator:
  """Scores candidates on a supergraph with fixed validation batches.

  Args:
    supergraph: a trained `Supergraph`.
    batches: K (images, labels) validation mini-batches.
    bn_mode: `batch` or `moving` (see the module docstring).
    reuse_prefix: share prefix activations (exact); False evaluates each completion from the images.
  """

  def __init__(self, supergraph, batches, bn_mode="batch", reuse_prefix=True):
    if bn_mode not in BN_MODES:
      raise ValueError(f"BN mode {bn_mode!r} is unknown; allowed: {', '.join(BN_MODES)}.")
    self.supergraph, self.batches = supergraph, list(batches)
    self.batch_stats, self.reuse_prefix = bn_mode == "batch", reuse_prefix
    self.forward_calls = 0
    # One traced function per piece (stem, each mixop, head) serves every path and every interval:
    # L + 2 traces in all, while a function per (start, stop) would retrace at every interval. A
    # function of its own per mixop, as one function traced once per mixop reads as retracing to
    # TensorFlow, which then warns.
    self._stem = tf.function(self._stem_fn)
    self._mixop_fns = [tf.function(functools.partial(self._mixop_fn, index=index))
                       for index in range(len(supergraph.mixops))]
    self._head_accuracy = tf.function(self._head_accuracy_fn)
    self._correct = tf.function(self._correct_fn)

  def _stem_fn(self, images):
    return self.supergraph.features(images, None, batch_stats=self.batch_stats, stop=0)

  def _mixop_fn(self, x, path, index):
    return self.supergraph.mixops[index](x, path[index], batch_stats=self.batch_stats)

  def _head_accuracy_fn(self, x, labels):
    return _accuracy(self.supergraph.head(x, batch_stats=self.batch_stats), labels)

  def _correct_fn(self, images, labels, path):
    return _accuracy(self.supergraph(images, path, batch_stats=self.batch_stats), labels)

  def _mixop(self, x, path, index):
    return self._mixop_fns[index](x, path)

  def _run(self, x, path, start, stop):
    for index in range(start, stop):
      x = self._mixop(x, path, index)
    return x

  def accuracies(self, completions: dict) -> dict:
    """Accuracy of every completion.

    Args:
      completions: candidate partial model (tuple of choice indices) -> list of full paths extending it.

    Returns:
      candidate -> list of accuracies, completion j measured on batch `j % K`.
    """
    by_member = collections.defaultdict(list)
    for candidate in completions:
      by_member[tuple(candidate[:-1])].append(tuple(candidate))
    results = {}
    for member, candidates in by_member.items():
      prefix = self._member_prefix(member, candidates[0]) if self.reuse_prefix else None
      for candidate in candidates:
        results[candidate] = self._candidate(candidate, completions[candidate], prefix)
    return results

  def accuracy(self, path, batch_index: int) -> float:
    """Accuracy of one full path on validation batch `batch_index`."""
    images, labels = self.batches[batch_index]
    self.forward_calls += 1
    return float(self._correct(images, labels, tf.constant(path, tf.int32)))

  def potentials(self, completions: dict) -> dict:
    """Candidate -> mean accuracy over its completions (NaN when it has none)."""
    return {c: float(np.mean(a)) if a else float("nan") for c, a in self.accuracies(completions).items()}

  def _member_prefix(self, member, any_candidate):
    path = self._pad(any_candidate)
    return [self._run(self._stem(images), path, 0, len(member)) for images, _ in self.batches]

  def _candidate(self, candidate, paths: Sequence, member_prefix):
    layer = len(candidate) - 1
    if member_prefix is not None:
      path = self._pad(candidate)
      prefix = [self._mixop(x, path, layer) for x in member_prefix]
    accuracies = []
    for j, full_path in enumerate(paths):
      images, labels = self.batches[j % len(self.batches)]
      full_path = tf.constant(full_path, tf.int32)
      self.forward_calls += 1
      if member_prefix is None:
        accuracy = self._correct(images, labels, full_path)
      else:
        x = self._run(prefix[j % len(prefix)], full_path, layer + 1, len(self.supergraph.mixops))
        accuracy = self._head_accuracy(x, labels)
      accuracies.append(float(accuracy))
    return accuracies

  def _pad(self, partial):
    """A full-length path tensor whose first entries are `partial` (the rest are not read)."""
    padded = list(partial) + [0] * (self.supergraph.space.num_layers - len(partial))
    return tf.constant(padded, tf.int32)


def _accuracy(logits, labels):
  predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return tf.reduce_mean(tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)), tf.float32))


def search_evaluator(config, supergraph, splits):
  """The `PotentialEvaluator` of a search (a `SearchConfig`): its fixed validation batches on `supergraph`."""
  batches = batches_lib.ValidationBatches(splits, config.data, config.eval_batch_size, config.eval_batches)
  return PotentialEvaluator(supergraph, [batches.batch(i) for i in range(len(batches))],
                                          config.bn_mode, config.reuse_prefix)
