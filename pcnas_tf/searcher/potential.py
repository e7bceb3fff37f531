"""Potentials of candidate partial models on a trained supergraph (paper Algorithm 1).

The potential of a candidate is the accuracy of its sampled completions, each on one validation
mini-batch: their correct predictions over their images (the mean accuracy when the batches are of one
size). Completion j of a candidate uses batch `j % K` of a fixed set of K batches, which makes work
shareable and exact to reuse. Counted in integers, a potential is the same whoever scores which share of
the completions and in which order the shares are added (evaluation workers, training tasks). Per batch, the interval's completions (of every candidate of every pool
member) form a tree over the layers: a node is a path prefix, its activations the output of that
prefix's last mixop on the batch. Each distinct (batch, prefix) node is computed once, depth first, so
only the activations along one branch are alive at a time; a path drawn twice is scored once.

  * the stem runs once per batch, each pool member's prefix once per batch, each candidate's next
    mixop once per batch, and further shared operators once;
  * below the last branching node a completion's path is its own: its remaining mixops and the head
    run as one traced call (`_suffixes[d]` for a suffix from layer d), not one call per mixop.

Reused activations are exact because a layer's output depends only on its input, in both BN modes:
  * `batch`: each layer normalises with the statistics of the evaluation batch (the default). The
    moving averages of single-path training mix the statistics of many paths, so they fit no single
    path well; the batch's own statistics do, at no cost.
  * `moving`: the supergraph's moving averages (plain inference mode).
Several completions of one node are not stacked into one call: in `batch` mode that would change the
statistics each layer normalises with.
"""

import collections
import functools
import itertools
from typing import NamedTuple

import tensorflow as tf

from pcnas_tf.data import batches as batches_lib
from pcnas_tf.searcher import pool as pool_lib

BN_MODES = ("batch", "moving")


class Work(NamedTuple):
  """What scoring a set of completions computes, counted in pieces (stem, mixop, head).

  completions: completions scored; distinct: distinct (batch, path) pairs among them;
  mixops: distinct (batch, prefix) nodes below the stem, each one mixop run; calls: traced calls made.
  """
  completions: int
  distinct: int
  stems: int
  mixops: int
  calls: int


class PotentialEvaluator:
  """Scores candidates on a supergraph with fixed validation batches.

  Args:
    supergraph: a trained `Supergraph`.
    batches: K (images, labels) validation mini-batches.
    bn_mode: `batch` or `moving` (see the module docstring).
    reuse_prefix: share every exact sub-computation (the tree above); False evaluates each completion
      from the images, as one call.
  """

  def __init__(self, supergraph, batches, bn_mode="batch", reuse_prefix=True):
    if bn_mode not in BN_MODES:
      raise ValueError(f"BN mode {bn_mode!r} is unknown; allowed: {', '.join(BN_MODES)}.")
    self.supergraph, self.batches = supergraph, list(batches)
    self.batch_stats, self.reuse_prefix = bn_mode == "batch", reuse_prefix
    self.forward_calls = 0  # completions scored (each one forward pass of the naive evaluation)
    self.last_work = None
    num_layers = len(supergraph.mixops)
    # One traced function per piece serves every path and every interval: the stem, each mixop (a
    # node's child), each suffix start d (mixops d..L-1 and the head), the whole network. A function of
    # its own per piece, as one function traced for several Python arguments reads as retracing to
    # TensorFlow, which then warns.
    self._stem = tf.function(self._stem_fn)
    self._mixop_fns = [tf.function(functools.partial(self._mixop_fn, index=index))
                       for index in range(num_layers)]
    self._suffixes = [tf.function(functools.partial(self._suffix_fn, start=start))
                      for start in range(num_layers)]
    self._correct = tf.function(self._correct_fn)

  def _stem_fn(self, images):
    return self.supergraph.features(images, None, batch_stats=self.batch_stats, stop=0)

  def _mixop_fn(self, x, choice, index):
    return self.supergraph.mixops[index](x, choice, batch_stats=self.batch_stats)

  def _suffix_fn(self, x, labels, path, start):
    x = self.supergraph.features(x, path, batch_stats=self.batch_stats, start=start, images=False)
    return _correct(self.supergraph.head(x, batch_stats=self.batch_stats), labels)

  def _correct_fn(self, images, labels, path):
    return _correct(self.supergraph(images, path, batch_stats=self.batch_stats), labels)

  def trace_all(self):
    """Traces every piece once, on the first batch along the path of operators 0 (results dropped), so
    that scoring traces nothing more: an evaluation worker does it while the chief trains, and the
    time of an interval is then all scoring. Reads no variable it would change (in both BN modes)."""
    images, labels = self.batches[0]
    path = tf.zeros([len(self.supergraph.mixops)], tf.int32)
    self._correct(images, labels, path)
    x = self._stem(images)
    for depth, function in enumerate(self._suffixes):
      function(x, labels, path)
      x = self._mixop_fns[depth](x, tf.constant(0, tf.int32))

  def traces(self) -> int:
    """Traces made so far by all of this evaluator's functions (one per piece used)."""
    functions = [self._stem, self._correct, *self._mixop_fns, *self._suffixes]
    return sum(f.experimental_get_tracing_count() for f in functions)

  def batch_size(self, j: int) -> int:
    """Images completion j is measured on (those of batch `j % K`)."""
    return int(self.batches[j % len(self.batches)][1].shape[0])

  def correct_counts(self, completions: dict, offsets: dict = None) -> dict:
    """Correct predictions of every completion, on its batch.

    Args:
      completions: key (a candidate partial model, or any key) -> list of full paths.
      offsets: key -> the index of its first path among its candidate's completions (default 0): the
        i-th path of a key is completion `offsets[key] + i`, measured on batch `(offsets[key] + i) % K`,
        so a share of a candidate's completions is scored as it would be with the rest.

    Returns:
      key -> list of correct counts, one per path (integers).
    """
    offsets = offsets or {}
    results = {c: [None] * len(paths) for c, paths in completions.items()}
    # Per batch: each distinct full path -> the (key, i) completions it scores.
    leaves = [collections.defaultdict(list) for _ in self.batches]
    for candidate, paths in completions.items():
      first = offsets.get(candidate, 0)
      for j, path in enumerate(paths):
        leaves[(first + j) % len(self.batches)][tuple(int(c) for c in path)].append((candidate, j))
    self.forward_calls += sum(len(paths) for paths in completions.values())
    counts = collections.Counter()
    for k, by_path in enumerate(leaves):
      if not by_path:
        continue
      images, labels = self.batches[k]
      if self.reuse_prefix:
        counts["stems"] += 1
        counts["calls"] += 1
        self._descend(self._stem(images), labels, 0, sorted(by_path), by_path, results, counts)
      else:  # Naive: every completion from the images, a repeated path again.
        for path, uses in by_path.items():
          for use in uses:
            counts["stems"] += 1
            counts["mixops"] += len(path)
            counts["calls"] += 1
            correct = int(self._correct(images, labels, tf.constant(path, tf.int32)))
            self._assign(correct, [use], results)
    self.last_work = Work(completions=sum(len(p) for p in completions.values()),
                          distinct=sum(len(by_path) for by_path in leaves), stems=counts["stems"],
                          mixops=counts["mixops"], calls=counts["calls"])
    return results

  def _descend(self, x, labels, depth, paths, by_path, results, counts):
    """Scores `paths` (sorted, distinct, sharing `paths[0][:depth]`) from `x`, the prefix's output."""
    for choice, group in itertools.groupby(paths, key=lambda path: path[depth]):
      group = list(group)
      counts["calls"] += 1
      if len(group) == 1:  # From here on the path is its own: the rest of it in one call.
        (path,) = group
        counts["mixops"] += len(path) - depth
        correct = self._suffixes[depth](x, labels, tf.constant(path, tf.int32))
        self._assign(int(correct), by_path[path], results)
      else:
        counts["mixops"] += 1
        y = self._mixop_fns[depth](x, tf.constant(choice, tf.int32))
        self._descend(y, labels, depth + 1, group, by_path, results, counts)

  @staticmethod
  def _assign(correct, uses, results):
    for candidate, j in uses:
      results[candidate][j] = correct

  def accuracies(self, completions: dict) -> dict:
    """Candidate -> the accuracy of each of its completions (completion j on batch `j % K`)."""
    return {c: [n / self.batch_size(j) for j, n in enumerate(counts)]
            for c, counts in self.correct_counts(completions).items()}

  def accuracy(self, path, batch_index: int) -> float:
    """Accuracy of one full path on validation batch `batch_index`."""
    images, labels = self.batches[batch_index]
    self.forward_calls += 1
    return int(self._correct(images, labels, tf.constant(path, tf.int32))) / int(labels.shape[0])

  def potentials(self, completions: dict) -> dict:
    """Candidate -> the accuracy of its completions together (NaN when it has none)."""
    return {c: pool_lib.potential_of(sum(counts), sum(self.batch_size(j) for j in range(len(counts))))
            for c, counts in self.correct_counts(completions).items()}


def _correct(logits, labels):
  predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return tf.reduce_sum(tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)), tf.int32))


def search_evaluator(config, supergraph, splits):
  """The `PotentialEvaluator` of a search (a `SearchConfig`): its fixed validation batches on `supergraph`."""
  batches = batches_lib.ValidationBatches(splits, config.data, config.eval_batch_size, config.eval_batches)
  return PotentialEvaluator(supergraph, [batches.batch(i) for i in range(len(batches))],
                                          config.bn_mode, config.reuse_prefix)
