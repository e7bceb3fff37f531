"""How well the latency lookup table predicts whole networks it never saw.

For each space: build a table from scratch (per-op timings + calibration on random networks; timed as
`build_s`), then time 50 further random networks end to end, twice, and compare the mean of the two
timings with the table's predictions, calibrated and measured-only. Default backend tflite (LiteRT +
XNNPACK, 1 thread), timed the way tables are: in groups of 16, interleaved, paired with the table's
reference network, 60 rounds (backends.py explains why).

Yardstick. A timing paired with the reference is a ratio, and the reference's speed relative to
other networks wanders on this shared VM (stored small-space builds: the held-out networks' mean ratio
moved by -6% to +6% against the calibration networks' between build and validation). The table build
times the same few yardstick networks in every group and divides each group's ratios by its yardstick
factor (see table.py); the held-out networks are timed the same way, in groups with those networks,
so their measurement is in the table's unit against the same set of networks. Only measurements
enter the factor, never the table's predictions. The timings without it (`vs_table_unit`) and two
reference-free ways are reported too.

Figures besides the headline:
  noise_floor       how often the two timings of the SAME network differ by more than 10% (and 5%):
                    the repeatability of the measurement itself, which no table can beat.
  measured_table    the summed one-operator timings, before calibration.
  yardstick_factors the groups' factors (1: the reference ran as fast, relative to the yardstick
                    networks, as over the build).
  vs_table_unit     the same timings without the yardstick factors.
  vs_own_unit       the same timings, each pass in its own unit (`table.unit_ms`: from the held-out
                    networks' own fastest times) instead of the table's.
  vs_plain_min      the predictions against each network's own minimum (no reference pairing), with
                    that estimator's noise floor.
  reference_drift   the reference's fastest time now / when the table was built.
  load_1min         the 1-minute load average before building, before and after validating.

Sizes are CPU-sized: batch 1 (the paper's batch 16 is a GPU setting; on this 2-core VM it makes each
timed call ~16x longer without changing what is compared), `macro` at width 1.0 and 32x32 (CIFAR), and
`small` at width 0.35 and 64x64.

  .venv/bin/python -m bench.latency_model                  # both spaces, about 11 minutes under load 1-2
  .venv/bin/python -m bench.latency_model --spaces=macro   # about 4 minutes
  .venv/bin/python -m bench.latency_model --backend=tf --spaces=macro
  .venv/bin/python -m bench.latency_model --quick          # about 4 minutes, smaller networks and counts
  .venv/bin/python -m bench.latency_model --spaces=macro --table=runs/t/macro.json   # re-validate a table
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
from scipy import stats

from pcnas_tf.nn import model as model_lib
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.constraints import backends
from pcnas_tf.constraints import timing
from pcnas_tf.constraints import constraint
from pcnas_tf.constraints import latency_probes
from pcnas_tf.constraints import latency_table

# (space, width, resolution, calibration networks, held-out networks); the first is the headline.
FULL = (("macro", 1.0, 32, 60, 50), ("small", 0.35, 64, 50, 50))
QUICK = (("macro", 0.5, 32, 12, 10), ("small", 0.35, 32, 12, 10))


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="small networks and counts, for a smoke run")
  parser.add_argument("--backend", default="tflite", choices=sorted(backends.BACKENDS))
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--archs", type=int, default=None, help="held-out networks (overrides the default)")
  parser.add_argument("--runs", type=int, default=None,
                      help="interleaved rounds per model (default 60; quick 30)")
  parser.add_argument("--estimator", default="ratio", choices=backends.ESTIMATORS)
  parser.add_argument("--spaces", default=None, help="comma-separated subset, e.g. macro")
  parser.add_argument("--work_dir", default="runs/latency_bench")
  parser.add_argument("--table", default=None,
                      help="table file to build, resume or reuse (default: a new one in work_dir); "
                           "the held-out timings are written next to it")
  return parser.parse_args(argv)


def accuracy(predicted, measured) -> dict:
  predicted, measured = np.asarray(predicted), np.asarray(measured)
  error = np.abs(predicted - measured) / measured
  return {"within_10pct": round(float(np.mean(error <= 0.10)), 4),
          "within_5pct": round(float(np.mean(error <= 0.05)), 4),
          "mape": round(float(np.mean(error)), 4),
          "max_error": round(float(np.max(error)), 4),
          "spearman": round(float(stats.spearmanr(predicted, measured)[0]), 4)}


def held_out_timings(backend, jobs, yardstick, reference, table, passes=2):
  """Times the held-out networks `passes` times, in groups like the build's: `table.GROUP` models
  interleaved, the table's yardstick networks among them.

  Returns per pass (timings, factors): the raw timings of `jobs` and the yardstick factor of the
  group each was timed in (`table.group_factor`); ratio / factor is in the table's unit.
  """
  groups = [list(chunk) + list(yardstick) for chunk in latency_table.chunks(jobs, len(yardstick))]
  if isinstance(backend, backends.TensorRTBackend):
    time_group = lambda group, seed: backend.measure_group(group, reference)
  else:
    groups = [[backend.prepare(model, shape) for model, shape in group] for group in groups]
    config = backend.config
    time_group = lambda calls, seed: timing.time_interleaved(
        calls, reference, config.warmup, config.runs, config.repeats, seed=seed)
  results = []
  for seed in range(passes):
    timings, factors = [], []
    for group in groups:
      measured = time_group(group, seed)
      held_out = measured[:len(group) - len(yardstick)]
      factor = latency_table.group_factor([t.ratio for t in measured[len(held_out):]],
                                          table.yardstick["reference_ratios"])
      timings += held_out
      factors += [factor] * len(held_out)
    results.append((timings, np.array(factors)))
  return results


def noise_floor(first, second) -> dict:
  """How much two timings of the same networks disagree: the best any predictor can match them."""
  first, second = np.asarray(first), np.asarray(second)
  differ = np.abs(first - second) / np.minimum(first, second)
  return {"over_10pct": round(float(np.mean(differ > 0.10)), 4),
          "over_5pct": round(float(np.mean(differ > 0.05)), 4),
          "median": round(float(np.median(differ)), 4), "max": round(float(np.max(differ)), 4)}


def run_space(args, name, width, resolution, calibration_archs, held_out_count) -> dict:
  import keras  # pylint: disable=g-import-not-at-top
  space = space_lib.get_space(name, width)
  config = backends.BackendConfig(args.backend, runs=args.runs, estimator=args.estimator)
  backend = backends.make_backend(config)
  output = args.table or os.path.join(tempfile.mkdtemp(dir=args.work_dir), f"{name}.json")
  load = [os.getloadavg()[0]]
  image = (args.batch, resolution, resolution, 3)
  start = time.time()
  # One prepared reference for the build and the validation: fresh interpreters of the same network
  # run a few % faster or slower for life (with fresh ones, held-out networks read 5% fast in a run).
  reference = backend.prepare_reference(
      latency_probes.reference_model(space, latency_table.make_metadata(
          space, config, backend.device(), args.batch, resolution, 3, 10, calibration_archs, 0)),
      image)
  table = latency_table.build_table(space, config, args.batch, resolution, output,
                              calibration_archs=calibration_archs, backend=backend, reference=reference)
  build_s = time.time() - start
  load.append(os.getloadavg()[0])
  held_out = latency_probes.random_archs(space, args.archs or held_out_count, seed=1,
                                  exclude=table.data["calibration_archs"])
  jobs = [(model_lib.build_model(space.parse_arch(arch), space, image[1:], 10), image)
          for arch in held_out]
  yardstick = [(latency_probes.network_model(space, table.metadata, arch), image)
               for arch in table.yardstick["archs"]]
  results = held_out_timings(backend, jobs, yardstick, reference, table)
  keras.backend.clear_session()
  load.append(os.getloadavg()[0])
  passes = [timings for timings, _ in results]
  factors = np.array([f for _, f in results])
  # Each pass in the table's unit: the same reference interpreters, each group's ratios divided by
  # its yardstick factor. The measurement is the mean of the passes.
  in_table_unit = np.array([[t.value(args.estimator, table.reference_ms) for t in p] for p in passes])
  values = in_table_unit / factors if args.estimator == "ratio" else in_table_unit
  # The same in each pass's own unit (`unit_ms`), what timings against another reference would need.
  own_unit = np.array([[t.value(args.estimator, latency_table.unit_ms([vars(x) for x in p]))
                        for t in p] for p in passes]).mean(axis=0)
  measured = values.mean(axis=0)
  minimum = np.min([[t.min_ms for t in p] for p in passes], axis=0)
  with open(os.path.join(os.path.dirname(output), f"{name}_held_out.json"), "w") as f:
    json.dump({"table": output, "archs": held_out, "yardstick_factors": factors.tolist(),
               "passes": [[vars(t) for t in p] for p in passes]}, f)
  archs = [space.parse_arch(a) for a in held_out]
  predicted = [constraint.predict(a, table) for a in archs]
  calibrated = accuracy(predicted, measured)
  raw = accuracy([constraint.predict(a, table, calibrated=False) for a in archs], measured)
  low, high = constraint.make_constraint("latency", space, table=table).range()
  reference_drift = (min(t.reference_ms or np.inf for p in passes for t in p) / table.reference_ms
                     if table.reference_ms else None)
  return {"space": name, "width": width, "resolution": resolution, "batch": args.batch,
          "archs": len(held_out), "calibration_archs": calibration_archs, **calibrated,
          "noise_floor": noise_floor(*values[:2]), "measured_table": raw,
          "vs_table_unit": accuracy(predicted, in_table_unit.mean(axis=0)),
          "yardstick_factors": [round(float(x), 4) for x in np.unique(factors)],
          "vs_plain_min": accuracy(predicted, minimum),
          "vs_own_unit": accuracy(predicted, own_unit),
          "plain_min_noise_floor": noise_floor(*[[t.min_ms for t in p] for p in passes[:2]]),
          "build_s": round(build_s, 1), "validate_s": round(time.time() - start - build_s, 1),
          "measured_ms": [round(float(np.min(measured)), 3), round(float(np.max(measured)), 3)],
          "table_range_ms": [round(low, 3), round(high, 3)],
          "reference_ms": table.reference_ms and round(table.reference_ms, 4),
          "reference_drift": reference_drift and round(float(reference_drift), 4),
          "fit": {k: table.calibration.get(k) for k in ("model", "scale", "op_offset_ms",
                                                         "ridge_lambda", "group_scales", "cv_rmse_ms")},
          "load_1min": [round(x, 2) for x in load], "device": table.metadata["device"]}


def print_table(results) -> None:
  print(f"{'space':6} {'archs':>5} {'ms range':>15} {'within10 cal/raw':>17} {'mape cal/raw':>14} "
        f"{'spearman cal/raw':>17} {'noise':>6} {'build_s':>8}")
  for r in results:
    raw = r["measured_table"]
    print(f"{r['space']:6} {r['archs']:>5} {r['measured_ms'][0]:>7.3f}-{r['measured_ms'][1]:<7.3f} "
          f"{r['within_10pct']:>8.2f}/{raw['within_10pct']:<8.2f} {r['mape']:>6.3f}/{raw['mape']:<7.3f} "
          f"{r['spearman']:>8.3f}/{raw['spearman']:<8.3f} {r['noise_floor']['over_10pct']:>6.2f} "
          f"{r['build_s']:>8.1f}")


def main(argv=None) -> None:
  args = parse_args(argv)
  args.runs = args.runs or (30 if args.quick else 60)
  os.makedirs(args.work_dir, exist_ok=True)
  start = time.time()
  settings = [s for s in (QUICK if args.quick else FULL)
              if args.spaces is None or s[0] in args.spaces.split(",")]
  results = [run_space(args, *setting) for setting in settings]
  print(f"Latency table vs. end-to-end timing on {results[0]['device']} ({args.backend}, batch "
        f"{args.batch}, {args.estimator} over {args.runs} interleaved rounds); cal = calibrated table, "
        f"raw = summed per-op timings; noise = share of networks whose two timings differ by >10%.")
  print_table(results)
  head = results[0]
  print(json.dumps({"backend": args.backend, "space": head["space"], "archs": head["archs"],
                    "within_10pct": head["within_10pct"], "mape": head["mape"],
                    "spearman": head["spearman"], "build_s": head["build_s"],
                    "noise_over_10pct": head["noise_floor"]["over_10pct"], "estimator": args.estimator,
                    "seconds": round(time.time() - start, 1), "quick": args.quick,
                    "spaces": {r["space"]: r for r in results}}))


if __name__ == "__main__":
  main()
