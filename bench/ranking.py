"""Benchmark: the ranking study (paper Fig. 2b) at CPU scale on Fashion-MNIST.

  .venv/bin/python -m bench.ranking [--quick] [--work_dir=DIR]

Runs `rank_lib.run_rank_check` from flags/rank_cpu.cfg in a fresh work directory: a PC-NAS and a One-Shot
supergraph trained with the same budget, K architectures from the PC-NAS final pool trained alone, and
the Pearson, Spearman and Kendall correlations of supergraph and stand-alone accuracy in both BN modes.
--quick ranks K = 8 (the flag file's); the full run K = 16, each trained alone twice as long. Ends with one
JSON line.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from absl import flags

import pcnas_tf  # pylint: disable=unused-import  (sets the Keras backend)
import tensorflow as tf

from pcnas_tf import rank_check_main  # pylint: disable=unused-import  (defines the ranking flags)
from pcnas_tf.studies import rank_check as rank_lib
from pcnas_tf.cli import search_flags

_FLAGFILE = os.path.join(search_flags.FLAGS_DIR, "rank_cpu.cfg")


def _config(quick):
  argv = [sys.argv[0], f"--flagfile={_FLAGFILE}"]
  if not quick:
    argv += ["--num_archs=16", "--standalone_epochs=4"]
  flags.FLAGS(argv)
  return rank_lib.RankConfig(search_flags.config_from_flags(), flags.FLAGS.num_archs,
                             flags.FLAGS.archs, flags.FLAGS.standalone_epochs)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="K = 8, two stand-alone epochs.")
  parser.add_argument("--work_dir", default="", help="Work directory (default: a fresh temporary one).")
  args = parser.parse_args()
  config = _config(args.quick)
  work_dir = args.work_dir or tempfile.mkdtemp(prefix="pcnas_ranking_")
  start = time.perf_counter()
  result = rank_lib.run_rank_check(config, work_dir, overwrite=True, progress=False)
  wall = time.perf_counter() - start
  print(rank_lib.format_correlations(result))
  print(f"wall {wall:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in result['timings'].items())}); "
        f"plot {os.path.join(work_dir, rank_lib.PLOT_FILE)}")
  table, mode = result["correlations"], result["bn_mode"]
  other = next(m for m in table["pcnas"] if m != mode)
  line = {"archs": result["num_archs"], "source": result["source"], "bn_mode": mode}
  for name in ("pcnas", "oneshot"):
    for stat in ("kendall", "pearson", "spearman"):
      line[f"{name}_{stat}"] = _round(table[name][mode][stat])
      line[f"{name}_{stat}_bn_{other}"] = _round(table[name][other][stat])
  accuracies = [a["standalone_top1"] for a in result["archs"]]
  line.update({"standalone_top1_min": _round(min(accuracies)), "standalone_top1_max": _round(max(accuracies)),
               "standalone_epochs": result["standalone_epochs"], "seconds": round(wall, 1),
               "quick": args.quick})
  print(json.dumps(line))


def _round(value):
  return round(value, 4) if value == value else None  # NaN (a constant list) as null


if __name__ == "__main__":
  tf.get_logger().setLevel("ERROR")
  main()
