"""Training a chosen architecture from scratch (paper section 4.1), and its test accuracy.

`run_training(config, work_dir)` reads top to bottom: set up (strategy, data, the stand-alone model with
SE, Nesterov SGD on a cosine schedule), restore the newest checkpoint or inherit supergraph weights, train
epoch by epoch with a checkpoint at the end of each, then evaluate top-1 and top-5 on the test split,
which neither the search nor this training ever looked at, and write `model.keras` and
`train_result.json` (read by the exporter).

Optimizer: Keras' `SGD(nesterov=True)`, the update rule of the search's `PathSGD`, with the paper's L2
regularisation coupled to the gradient like `PathSGD`'s (not Keras' decoupled `weight_decay`):
`weight_decay * sum(kernel ** 2) / 2` over convolution and dense kernels is added to the loss, so
`weight_decay * kernel` enters the gradient before momentum. It goes through the loss rather than the
gradients because Keras sums gradients over replicas inside `apply_gradients`, and
`tf.nn.scale_regularization_loss` divides the term by the replica count.

Resumption: each epoch's input pipeline is seeded by (seed, epoch), and checkpoints are written at epoch
ends, so a run resumed from a checkpoint sees the same batches as one that was never stopped.
"""

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from pcnas_tf import files
from pcnas_tf import provenance

from pcnas_tf.training import workdir

from pcnas_tf.training import checkpoint
from pcnas_tf.distribute import cluster as cluster_lib
from pcnas_tf.space import cost
from pcnas_tf.data import data_config
from pcnas_tf.data import sources as data_sources
from pcnas_tf.data import batches as batches_lib
from pcnas_tf import errors
from pcnas_tf.nn import model as model_lib
from pcnas_tf.distribute import strategy as strategy_lib
from pcnas_tf.training import epochs
from pcnas_tf.training import from_search
from pcnas_tf.training import train_config

RESULT_FILE = "train_result.json"
MODEL_FILE = "model.keras"
CONFIG_FILE = workdir.CONFIG_FILE
CHECKPOINT_DIR = "checkpoints"
TOP_K = 5
# Per-epoch data seeds are seed + stride * epoch: the stride exceeds any count of replicas, whose id
# `batches.train_pipeline` adds to the seed, so no two (epoch, replica) pairs share a seed.
_EPOCH_SEED_STRIDE = 10_000
_OUTPUTS = (CHECKPOINT_DIR, "tensorboard", CONFIG_FILE, RESULT_FILE, MODEL_FILE)
# L2 regularisation covers convolution and dense kernels, as in `path_optimizer.PathSGD`.
_DECAYED_WEIGHTS = ("kernel", "depthwise_kernel")
MODEL, OPTIMIZER = "model/", "optimizer/"  # names of a training checkpoint's arrays


# The work directory ---------------------------------------------------------------------------------


def check_work_dir(work_dir: str, config: train_config.TrainConfig, overwrite: bool) -> bool:
  """Raises `UserError` unless `config` may train in `work_dir`; writes nothing.

  A work directory may be written, and it either is empty or new, holds an unfinished training of
  `config` (to resume), holds no trained state (a rejected or never started run: taken over), or
  `overwrite` is set.

  Returns:
    True if the training starts afresh there (earlier outputs are to be removed), False if it resumes.
  """
  files.check_writable_dir(work_dir)
  if overwrite or not files.isdir(work_dir):
    return True
  if not [name for name in files.listdir(work_dir) if name != ".lock"]:
    return True
  _check_resumable(work_dir, config)
  return not checkpoint.has_checkpoints(os.path.join(work_dir, CHECKPOINT_DIR))


def prepare_work_dir(work_dir: str, config: train_config.TrainConfig, overwrite: bool) -> None:
  """Checks `work_dir` (`check_work_dir`), creates it and writes `config` to its config.json.

  A fresh start removes the outputs of an earlier run there first.

  Raises:
    UserError: if it holds other files, another config's trained run, or a finished run, without
      `overwrite`.
  """
  workdir.prepare(work_dir, check_work_dir(work_dir, config, overwrite), _OUTPUTS, config.to_json())


def _check_resumable(work_dir: str, config: train_config.TrainConfig) -> None:
  config_path = os.path.join(work_dir, CONFIG_FILE)
  if files.exists(os.path.join(work_dir, RESULT_FILE)) or not files.exists(config_path):
    what = "a finished training" if files.exists(config_path) else "files of something else"
    raise errors.UserError(f"Work directory {work_dir!r} already exists and holds {what}; pass "
                           f"--overwrite to train afresh there, or choose another --work_dir.")
  if not checkpoint.has_checkpoints(os.path.join(work_dir, CHECKPOINT_DIR)):
    return  # no trained state: any config may take the directory over
  differences = workdir.saved_config_differences(work_dir, config.to_json(), "training config")
  if differences:
    raise errors.UserError(f"Work directory {work_dir!r} already exists and holds a training with a "
                           f"different config ({'; '.join(differences[:3])}); pass --overwrite to "
                           f"train afresh, or choose another --work_dir.")


# Training -------------------------------------------------------------------------------------------


class Training:
  """One training run in a work directory. Use `run_training`."""

  def __init__(self, config: train_config.TrainConfig, work_dir: str, progress=True,
               collective_timeout_s=strategy_lib.COLLECTIVE_TIMEOUT_S):
    self.config, self.work_dir = config, work_dir
    keras.utils.set_random_seed(config.seed)  # the model's initial weights
    self.strategy = strategy_lib.make_strategy(config.strategy, collective_timeout_s)
    # Every task trains; only the chief's files are kept (see cluster.py).
    self.task = strategy_lib.task_of(self.strategy)
    self.progress = progress and self.task.is_chief
    self.out_dir = cluster_lib.output_dir(work_dir, self.task)
    self.splits = data_sources.load(config.data, min_resolution=config.space.total_stride)
    check_splits(config, self.splits)
    self.steps_per_epoch = config.steps_per_epoch or self.splits.num_train // config.batch_size
    schedule = config.optimizer.schedule(config.epochs * self.steps_per_epoch)
    with self.strategy.scope():
      self.model = model_lib.build_model(config.arch, config.space, self.splits.image_shape,
                                         self.splits.num_classes, se=config.se)
      self.optimizer = keras.optimizers.SGD(schedule, momentum=config.optimizer.momentum, nesterov=True)
      self.optimizer.build(self.model.trainable_variables)
    self.loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=config.label_smoothing, reduction=None)
    self.decayed = [v for v in self.model.trainable_variables if v.path.split("/")[-1] in _DECAYED_WEIGHTS]
    self.epoch, self.wall_time, self.log = 0, 0.0, []
    self.writer = None  # created by `run`: nothing is written before every check has passed
    self._train_step = tf.function(self._distributed_train_step)
    self._eval_step = tf.function(self._distributed_eval_step, reduce_retracing=True)

  def run(self) -> dict:
    self.writer = tf.summary.create_file_writer(os.path.join(self.out_dir, "tensorboard"))
    if not self._restore() and self.config.init_from_supergraph:
      from_search.inherit_from_search(self.config.init_from_supergraph, self.config.space, self.config.arch,
                                      self.model)
    while self.epoch < self.config.epochs:
      self._train_epoch()
    return self._finish()

  def _train_epoch(self):
    start = time.time()
    iterator = iter(self._epoch_dataset())
    loss, accuracy = epochs.run_epoch(
        lambda: self._train_step(iterator), epoch=self.epoch, total_epochs=self.config.epochs,
        steps=self.steps_per_epoch, batch_size=self.config.batch_size, work_dir=self.work_dir,
        progress=self.progress)
    validation_top1, _ = self.evaluate("validation")
    self.wall_time += time.time() - start
    self._end_epoch(loss, accuracy, validation_top1)

  def _epoch_dataset(self):
    """This epoch's batches: a pipeline seeded by (seed, epoch), so resumption needs no skipping."""
    order_seed = self.config.data.seed if self.config.order_seed is None else self.config.order_seed
    seed = order_seed + _EPOCH_SEED_STRIDE * self.epoch
    data = dataclasses.replace(self.config.data, seed=seed)
    return batches_lib.train_dataset(self.splits, data, self.config.batch_size, self.strategy,
                                     mixup_alpha=self.config.mixup)

  def _replica_train_step(self, images, labels):
    if labels.shape.rank == 1:  # without MixUp the labels are class ids
      labels = tf.one_hot(labels, self.splits.num_classes)
    with tf.GradientTape() as tape:
      logits = self.model(images, training=True)
      loss = tf.nn.compute_average_loss(self.loss(labels, logits),
                                        global_batch_size=self.config.batch_size)
      l2 = tf.add_n([tf.reduce_sum(tf.square(v)) for v in self.decayed])
      total = loss + tf.nn.scale_regularization_loss(0.5 * self.config.optimizer.weight_decay * l2)
    gradients = tape.gradient(total, self.model.trainable_variables)
    self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
    # Accuracy against the dominant class of (possibly mixed) labels.
    correct = tf.equal(tf.argmax(logits, -1), tf.argmax(labels, -1))
    return loss, tf.reduce_sum(tf.cast(correct, tf.int32))

  def _distributed_train_step(self, iterator):
    images, labels = next(iterator)
    loss, correct = self.strategy.run(self._replica_train_step, args=(images, labels))
    return (self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
            self.strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))

  def _replica_eval_step(self, images, labels):
    def counts():
      logits = self.model(images, training=False)
      targets = tf.cast(labels, tf.int32)
      k = min(TOP_K, self.splits.num_classes)
      hits = [tf.reduce_sum(tf.cast(tf.math.in_top_k(targets, logits, top), tf.int32)) for top in (1, k)]
      return tf.stack(hits + [tf.size(targets)])

    # Under multi_worker the shards can differ by a batch: a worker whose shard is done gets empty
    # batches while the others finish theirs, and BN cannot run on zero images.
    return tf.cond(tf.size(labels) > 0, counts, lambda: tf.zeros([3], tf.int32))

  def _distributed_eval_step(self, images, labels):
    counts = self.strategy.run(self._replica_eval_step, args=(images, labels))
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, counts, axis=None)

  def evaluate(self, split: str):
    """(top-1, top-5) accuracy of the model on one pass over `split`, in inference mode."""
    dataset = batches_lib.eval_dataset(self.splits, self.config.data, self.config.eval_batch_size,
                                    self.strategy, split=split)
    totals = np.zeros(3, np.int64)
    for images, labels in dataset:
      totals += self._eval_step(images, labels).numpy()
    return totals[0] / totals[2], totals[1] / totals[2]

  def _end_epoch(self, loss, accuracy, validation_top1):
    self.epoch += 1
    learning_rate = float(self.optimizer.learning_rate)
    self.log.append({"epoch": self.epoch, "loss": loss, "accuracy": accuracy,
                     "validation_top1": validation_top1, "learning_rate": learning_rate})
    epochs.write_scalars(self.writer, self.epoch, {
        "train/loss": loss, "train/accuracy": accuracy, "train/learning_rate": learning_rate,
        "validation/top1": validation_top1})
    if self.progress:
      print(f"epoch {self.epoch}/{self.config.epochs}: loss {loss:.4f}, accuracy {accuracy:.4f}, "
            f"validation top-1 {validation_top1:.4f}, lr {learning_rate:.4g}", flush=True)
    self._save()

  # Checkpoints ------------------------------------------------------------------------------------

  def _checkpointed(self):
    """(name, variable) of the model's weights and the optimizer's variables (step and momentum).

    Keras names an optimizer's variables after the optimizer (`sgd_14/iteration`), and numbers
    optimizers per process; the names kept drop that first part (`optimizer/iteration`).
    """
    optimizer = [(OPTIMIZER + checkpoint.name_of(v).split("/", 1)[-1], v)
                 for v in self.optimizer.variables]
    return checkpoint.named(self.model.weights, MODEL) + optimizer

  def _save(self):
    state = {"config": self.config.to_json(), "arch": list(self.config.arch),
             "space_fingerprint": self.config.space.fingerprint(), "se": self.config.se,
             "epoch": self.epoch, "wall_time_s": self.wall_time, "log": self.log}
    checkpoint.save(os.path.join(self.out_dir, CHECKPOINT_DIR), self.epoch,
                    checkpoint.arrays_of(self._checkpointed()), state)

  def _restore(self) -> bool:
    """Restores the newest checkpoint, if any; raises CheckpointMismatchError if it is another model's."""
    directory = os.path.join(self.work_dir, CHECKPOINT_DIR)
    found = checkpoint.latest(directory)
    if found is None:
      return False
    arrays, state = found
    config = self.config
    saved = (state.get("arch"), state.get("space_fingerprint"), state.get("se"))
    if saved != (list(config.arch), config.space.fingerprint(), config.se):
      raise checkpoint.CheckpointMismatchError(
          f"Checkpoint in {directory!r} was written for architecture {saved[0]} (SE {saved[2]}, space "
          f"{saved[1]}), not for {config.space.arch_to_string(config.arch)} (SE {config.se}, space "
          f"{config.space.fingerprint()}); pass --overwrite to train afresh, or another --work_dir.")
    checkpoint.assign(self._checkpointed(), arrays, directory, "this model")
    self.epoch, self.wall_time, self.log = state["epoch"], state["wall_time_s"], state["log"]
    if self.progress:
      print(f"Resuming from the checkpoint of epoch {self.epoch}.", flush=True)
    return True

  # Results ----------------------------------------------------------------------------------------

  def _finish(self) -> dict:
    top1, top5 = self.evaluate("test")
    config, shape = self.config, self.splits.image_shape
    model_cost = cost.arch_cost(config.arch, config.space, shape, self.splits.num_classes, config.se)
    result = {"space": config.space.to_json(), "space_name": config.space.name,
              "arch": list(config.arch), "arch_string": config.space.arch_to_string(config.arch),
              "input_shape": list(shape), "num_classes": self.splits.num_classes, "se": config.se,
              "top1": float(top1), "top5": float(top5), "test_images": self.splits.num_test,
              "params": model_cost.params, "flops": model_cost.flops, "epochs": self.epoch,
              "steps_per_epoch": self.steps_per_epoch, "wall_time_s": self.wall_time,
              "log": self.log, "config": config.to_json(), "versions": provenance.versions(),
              **config.predicted}
    epochs.write_scalars(self.writer, self.epoch, {"test/top1": top1, f"test/top{TOP_K}": top5})
    self.writer.flush()
    save_model_atomically(self.model, os.path.join(self.out_dir, MODEL_FILE))
    files.write_json(os.path.join(self.out_dir, RESULT_FILE), result)
    return result


def check_splits(config: train_config.TrainConfig, splits: data_config.Splits) -> None:
  """Raises `UserError` unless `splits` can train `config`: checked before anything is trained."""
  if splits.test is None:
    raise data_config.DataError(f"Dataset {config.data.dataset!r} has no test split (one of "
                             f"{', '.join(data_config.TEST_SPLITS)}) to report accuracy on; add one.")
  batches_lib.check_train_batch(splits, config.batch_size, config.steps_per_epoch)


def save_model_atomically(model: keras.Model, path: str) -> None:
  """Saves a `.keras` model under a temporary name, then renames it to `path` (on any file system)."""
  with files.written_locally(path) as staging:
    model.save(staging)


def run_training(config: train_config.TrainConfig, work_dir: str, overwrite=False, progress=True,
                 collective_timeout_s=strategy_lib.COLLECTIVE_TIMEOUT_S) -> dict:
  """Trains (or resumes training) `config.arch` in `work_dir`; returns what train_result.json holds.

  Under `--strategy=multi_worker` every task calls this with the same arguments and a shared
  `work_dir`; only the chief prepares, locks and writes it (see cluster.py).
  """
  config.validate()
  return cluster_lib.run_job(
      work_dir, config.strategy == "multi_worker", lambda: check_work_dir(work_dir, config, overwrite),
      lambda chief: Training(config, work_dir, progress, collective_timeout_s),
      lambda: prepare_work_dir(work_dir, config, overwrite))
