"""How well the latency lookup table predicts whole networks it never saw.

For each space: build a table from scratch (per-op timings + calibration on random networks; timed as
`build_s`), then time 50 further random networks end to end, twice, and compare the mean of the two
timings with the table's predictions, calibrated and measured-only. Default backend tflite (LiteRT +
XNNPACK, 1 thread), timed the way tables are: in groups of 16, interleaved, paired with the table's
reference network, 60 rounds (backends.py explains why).

Anchors. A timing paired with the reference is a ratio; the table turns ratios into ms with the
build's unit. But the reference's speed relative to other networks wanders between sessions on this
shared VM: over five stored small-space builds, the held-out networks' mean ratio moved by -6% to +6%
against the calibration networks' (the per-network scatter, that offset removed, was 2.5-3.6%). So each
group of held-out networks also re-times `ANCHORS_PER_GROUP` calibration networks, and each pass is
scaled by the median over its anchors of (anchor's build-time value / its value now): the held-out
networks are measured in the build's unit against networks the build timed, as a scale is checked
against known weights. Only the anchors' measurements enter that factor, never the table's
predictions. The unscaled timings (`vs_table_unit`) and two reference-free ways are reported too.

Figures besides the headline:
  noise_floor       how often the two timings of the SAME network differ by more than 10% (and 5%):
                    the repeatability of the measurement itself, which no table can beat.
  measured_table    the summed one-operator timings, before calibration.
  session_scales    each pass's anchor factor (1: the yardstick did not move since the build).
  vs_table_unit     the same timings without the anchor factor.
  vs_own_unit       the same timings, each pass in its own unit (`table.unit_ms`: from the held-out
                    networks' own fastest times) instead of the table's.
  vs_plain_min      the predictions against each network's own minimum (no reference pairing), with
                    that estimator's noise floor.
  reference_drift   the reference's fastest time now / when the table was built.
  load_1min         the 1-minute load average before building, before and after validating.

Sizes are CPU-sized: batch 1 (the paper's batch 16 is a GPU setting; on this 2-core VM it makes each
timed call ~16x longer without changing what is compared), `macro` at width 1.0 and 32x32 (CIFAR), and
`small` at width 0.35 and 64x64.

  .venv/bin/python -m bench.latency_model                  # both spaces, about 10 minutes under load 2-4
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

from pcnas_tf import model as model_lib
from pcnas_tf import space as space_lib
from pcnas_tf import latency

# (space, width, resolution, calibration networks, held-out networks); the first is the headline.
# Re-timed calibration networks in each group of held-out ones (see `session_scale`).
ANCHORS_PER_GROUP = 3
FULL = (("macro", 1.0, 32, 60, 50), ("small", 0.35, 64, 50, 50))
QUICK = (("macro", 0.5, 32, 12, 10), ("small", 0.35, 32, 12, 10))


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="small networks and counts, for a smoke run")
  parser.add_argument("--backend", default="tflite", choices=sorted(latency.BACKENDS))
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--archs", type=int, default=None, help="held-out networks (overrides the default)")
  parser.add_argument("--runs", type=int, default=None,
                      help="interleaved rounds per model (default 60; quick 30)")
  parser.add_argument("--estimator", default="ratio", choices=latency.backends.ESTIMATORS)
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


def with_anchors(held_out, anchors, group=latency.table.GROUP, per_group=ANCHORS_PER_GROUP):
  """Held-out networks with `per_group` anchors in each group of `group`; returns (jobs, is_anchor)."""
  jobs, is_anchor, step = [], [], group - per_group
  for start in range(0, len(held_out), step):
    chunk = held_out[start:start + step]
    picked = [anchors[(start // step * per_group + i) % len(anchors)] for i in range(per_group)]
    jobs += chunk + picked
    is_anchor += [False] * len(chunk) + [True] * len(picked)
  return jobs, np.array(is_anchor)


def held_out_timings(backend, jobs, reference, passes=2, group=latency.table.GROUP):
  """Times the held-out networks `passes` times, in groups of `group` interleaved networks.

  Groups the size of the table build's: how many models share the rounds changes what each visit
  finds in the CPU's caches, so the held-out networks are timed the way calibration networks were.
  """
  if isinstance(backend, latency.backends.TensorRTBackend):
    return [backend.measure_group(jobs, reference) for _ in range(passes)]
  calls = [backend.prepare(model, shape) for model, shape in jobs]
  config = backend.config
  return [[timing for start in range(0, len(calls), group)
           for timing in latency.backends.time_interleaved(
               calls[start:start + group], reference, config.warmup, config.runs, config.repeats,
               seed=seed)]
          for seed in range(passes)]


def session_scale(anchor_timings, anchor_archs, table, estimator) -> float:
  """How far this session's yardstick moved since the build: median of build value / value now.

  The anchors are calibration networks, re-timed among the held-out ones; their values at build time
  are in the table file. Only their measurements enter, never the table's predictions.
  """
  then = [latency.backends.Timing(**table.data["measurements"][f"arch/{a}"]).value(
      estimator, table.reference_ms) for a in anchor_archs]
  now = [t.value(estimator, table.reference_ms) for t in anchor_timings]
  return float(np.median(np.divide(then, now)))


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
  config = latency.BackendConfig(args.backend, runs=args.runs, estimator=args.estimator)
  backend = latency.make_backend(config)
  output = args.table or os.path.join(tempfile.mkdtemp(dir=args.work_dir), f"{name}.json")
  load = [os.getloadavg()[0]]
  image = (args.batch, resolution, resolution, 3)
  start = time.time()
  # One prepared reference for the build and the validation: fresh interpreters of the same network
  # run a few % faster or slower for life (with fresh ones, held-out networks read 5% fast in a run).
  reference = backend.prepare_reference(
      latency.table.reference_model(space, latency.table.make_metadata(
          space, config, backend.device(), args.batch, resolution, 3, 10, calibration_archs, 0)),
      image)
  table = latency.build_table(space, config, args.batch, resolution, output,
                              calibration_archs=calibration_archs, backend=backend, reference=reference)
  build_s = time.time() - start
  load.append(os.getloadavg()[0])
  held_out = latency.random_archs(space, args.archs or held_out_count, seed=1,
                                  exclude=table.data["calibration_archs"])
  timed, is_anchor = with_anchors(held_out, table.data["calibration_archs"])
  jobs = [(model_lib.build_model(space.parse_arch(arch), space, image[1:], 10), image)
          for arch in timed]
  all_passes = held_out_timings(backend, jobs, reference)
  keras.backend.clear_session()
  load.append(os.getloadavg()[0])
  anchors = [a for a, anchor in zip(timed, is_anchor) if anchor]
  scales = [session_scale([t for t, a in zip(p, is_anchor) if a], anchors, table, args.estimator)
            for p in all_passes]
  passes = [[t for t, a in zip(p, is_anchor) if not a] for p in all_passes]
  # Each pass in the table's unit (same reference interpreters), times its anchors' scale; the
  # measurement is the mean of the passes.
  in_table_unit = np.array([[t.value(args.estimator, table.reference_ms) for t in p] for p in passes])
  values = in_table_unit * np.array(scales)[:, None]
  # The same in each pass's own unit (`unit_ms`), what timings against another reference would need.
  own_unit = np.array([[t.value(args.estimator, latency.table.unit_ms([vars(x) for x in p]))
                        for t in p] for p in passes]).mean(axis=0)
  measured = values.mean(axis=0)
  minimum = np.min([[t.min_ms for t in p] for p in passes], axis=0)
  with open(os.path.join(os.path.dirname(output), f"{name}_held_out.json"), "w") as f:
    json.dump({"table": output, "archs": held_out, "anchors": anchors, "session_scales": scales,
               "passes": [[vars(t) for t in p] for p in passes],
               "anchor_passes": [[vars(t) for t, a in zip(p, is_anchor) if a] for p in all_passes]}, f)
  archs = [space.parse_arch(a) for a in held_out]
  predicted = [latency.predict(a, table) for a in archs]
  calibrated = accuracy(predicted, measured)
  raw = accuracy([latency.predict(a, table, calibrated=False) for a in archs], measured)
  low, high = latency.make_constraint("latency", space, table=table).range()
  reference_drift = (min(t.reference_ms or np.inf for p in passes for t in p) / table.reference_ms
                     if table.reference_ms else None)
  return {"space": name, "width": width, "resolution": resolution, "batch": args.batch,
          "archs": len(held_out), "calibration_archs": calibration_archs, **calibrated,
          "noise_floor": noise_floor(*values[:2]), "measured_table": raw,
          "vs_table_unit": accuracy(predicted, in_table_unit.mean(axis=0)),
          "session_scales": [round(x, 4) for x in scales],
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
