"""Input pipeline throughput against what the supergraph's train step consumes, at demo settings.

Fashion-MNIST (prepared into --data-dir on first use, about half a minute), 32x32 RGB, global batch 128,
`macro_space(0.5)`. The pipeline figure is its steady state (after the first epoch filled the in-memory
cache); the train figure is `SupergraphTrainer.train_step` on a fixed batch with a random path per step.
The last line is one JSON object; `ratio` (pipeline / train) should be at least 3.

  .venv/bin/python -m bench.input_pipeline                 # about a minute on 2 cores
  .venv/bin/python -m bench.input_pipeline --train-steps 5 --batches 100
"""

import argparse
import json
import time

import numpy as np
import tensorflow as tf

from pcnas_tf.data import data_config
from pcnas_tf.data import sources as data_sources
from pcnas_tf.data import batches as batches_lib
from pcnas_tf.cli import app
from pcnas_tf import errors
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.distribute import strategy as strategy_lib
from pcnas_tf.training import supergraph_trainer as trainer_lib


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--data-dir", default=data_config.DEFAULT_DATA_DIR, help="tfds data directory")
  parser.add_argument("--resolution", type=int, default=32)
  parser.add_argument("--batch", type=int, default=128, help="global batch size")
  parser.add_argument("--width", type=float, default=0.5, help="macro space width multiplier")
  parser.add_argument("--batches", type=int, default=300, help="timed pipeline batches")
  parser.add_argument("--train-steps", type=int, default=10, help="timed train steps")
  parser.add_argument("--strategy", default="one_device", choices=strategy_lib.STRATEGIES)
  return parser.parse_args(argv)


def time_batches(iterator, count: int) -> float:
  """Seconds to draw `count` batches from `iterator`."""
  start = time.perf_counter()
  for _ in range(count):
    next(iterator)
  return time.perf_counter() - start


def pipeline_rates(splits, config, args, strategy) -> tuple[float, float]:
  """Images/s of the first epoch (decoding, filling the cache) and of the steady state after it."""
  iterator = iter(batches_lib.train_dataset(splits, config, args.batch, strategy))
  epoch = splits.num_train // args.batch + 1
  first = epoch * args.batch / time_batches(iterator, epoch)
  return first, args.batches * args.batch / time_batches(iterator, args.batches)


def train_rate(splits, config, args, strategy) -> float:
  """Images/s the train step consumes, fed from a fixed batch so the input costs nothing."""
  space = space_lib.macro_space(args.width)
  trainer = trainer_lib.SupergraphTrainer(space, splits.image_shape, splits.num_classes, strategy,
                                          args.batch)
  batch = next(iter(batches_lib.train_pipeline(splits, config, args.batch)))
  fixed = tf.data.Dataset.from_tensors(batch).repeat()
  iterator = iter(strategy.experimental_distribute_dataset(fixed))
  rng = np.random.default_rng(0)
  paths = [[rng.integers(len(layer.choices)) for layer in space.layers]
           for _ in range(args.train_steps + 1)]
  trainer.train_step(iterator, paths[0])  # Traces the step.
  start = time.perf_counter()
  for path in paths[1:]:
    loss, _ = trainer.train_step(iterator, path)
  float(loss)  # Waits for the last step.
  return args.train_steps * args.batch / (time.perf_counter() - start)


def main(argv=None) -> None:
  args = parse_args(argv)
  strategy = strategy_lib.make_strategy(args.strategy)
  config = data_config.DataConfig(data_dir=args.data_dir, resolution=args.resolution)
  splits = data_sources.load(config, min_resolution=space_lib.macro_space(args.width).total_stride)
  first_epoch, pipeline = pipeline_rates(splits, config, args, strategy)
  train = train_rate(splits, config, args, strategy)
  result = {"pipeline_images_per_s": round(pipeline, 1), "train_images_per_s": round(train, 1),
            "ratio": round(pipeline / train, 2), "first_epoch_images_per_s": round(first_epoch, 1),
            "resolution": args.resolution, "global_batch": args.batch, "width": args.width,
            "replicas": strategy.num_replicas_in_sync}
  print(f"{'measure':<28}{'images/s':>12}")
  print(f"{'pipeline, first epoch':<28}{first_epoch:>12.0f}")
  print(f"{'pipeline, cached':<28}{pipeline:>12.0f}")
  print(f"{'supergraph train step':<28}{train:>12.0f}")
  print(f"{'ratio (cached / train)':<28}{pipeline / train:>12.2f}")
  print(json.dumps(result))


if __name__ == "__main__":
  try:
    main()
  except errors.UserError as error:
    app.report(error)
    raise SystemExit(2) from error
