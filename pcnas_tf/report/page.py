"""`report.html`: one self-contained page per run, rewritten at the end of every stage.

The page holds the run's settings, the pictures (embedded as data: URIs), the pool of every interval,
the latency table's fit, and after retraining and export the retrained networks, the final accuracy,
the measured latency and the exported files. It needs nothing from the network (no scripts, fonts or
style sheets from elsewhere), and it is replaced atomically, so it can be opened while a run goes on:
sections whose stage has not finished say so.

  page.write_report(work_dir, Run(search=result_so_far))                  # during and after the search
  page.write_report(work_dir, Run(search, retrained, exported, outcome))  # after the later stages

Sections (their ids): status, settings, search-front, intervals, chosen, latency-table, retrained,
export, outcome, tensorboard.
"""

import base64
import dataclasses
import datetime
import html
import json
import os

from pcnas_tf import files
from pcnas_tf.report import figures
from pcnas_tf.space import search_space as space_lib

REPORT_FILE = "report.html"
# Pictures in the work directory, by the section that shows them.
SEARCH_PNG, SEARCH_FRONT_PNG, CHOSEN_PNG = "search.png", "search_front.png", "chosen_arch.png"
LATENCY_PNG, RETRAINED_FRONT_PNG = "latency_table.png", "retrained_front.png"
PICTURES = (SEARCH_PNG, SEARCH_FRONT_PNG, CHOSEN_PNG, LATENCY_PNG, RETRAINED_FRONT_PNG)
SECTIONS = ("status", "settings", "search-front", "intervals", "chosen", "latency-table", "retrained",
            "export", "outcome", "tensorboard")

_STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 70em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-top: 0.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.number { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
.pending { color: #777; font-style: italic; } .over { color: #b00; font-weight: bold; }
.within { color: #070; font-weight: bold; } code { background: #f5f5f5; padding: 0 0.2em; }
nav a { margin-right: 0.8em; } details { margin: 0.5em 0; }
"""


@dataclasses.dataclass(frozen=True)
class Run:
  """What the page shows: the search's result (so far; without `final_pool` while it runs), the
  retrained pool members (dicts as `hparams.write_retrained` takes them), the chosen network's
  export_result.json and the pipeline's result, each None until its stage has finished."""
  search: dict
  retrained: tuple = ()
  exported: dict | None = None
  outcome: dict | None = None


def write_report(work_dir: str, run: Run) -> str:
  """Writes `report.html` into `work_dir` atomically, with the pictures found there; returns its path."""
  path = os.path.join(work_dir, REPORT_FILE)
  files.write_text(path, render(work_dir, run))
  return path


def render(work_dir: str, run: Run) -> str:
  """The page as one HTML string."""
  search = run.search
  body = [f"<h1>PC-NAS run: {_e(files.absolute(work_dir))}</h1>",
          f"<p>Updated {_e(datetime.datetime.now().isoformat(timespec='seconds'))}.</p>",
          "<nav>" + "".join(f'<a href="#{s}">{_e(s)}</a>' for s in SECTIONS) + "</nav>",
          _section("status", "Status", _status(run)),
          _section("settings", "Settings", _settings(search)),
          _section("search-front", "Accuracy against cost: the search", _search_front(work_dir, search)),
          _section("intervals", "The pool of every interval", _intervals(work_dir, search)),
          _section("chosen", "The chosen network", _chosen(work_dir, search)),
          _section("latency-table", "The latency table", _latency_table(work_dir, search, run.exported)),
          _section("retrained", "After retraining", _retrained(work_dir, search, run.retrained)),
          _section("export", "Exported files", _export(run.exported)),
          _section("outcome", "Outcome", _outcome(run.outcome)),
          _section("tensorboard", "TensorBoard", _tensorboard(work_dir))]
  return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
          '<link rel="icon" href="data:,">'
          f"<title>PC-NAS report: {_e(os.path.basename(files.absolute(work_dir).rstrip('/')))}</title>"
          f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


# Sections -----------------------------------------------------------------------------------------


def _status(run: Run) -> str:
  search = run.search
  layers = len(search["space"]["layers"])
  decided = len(search.get("intervals") or [])
  if "final_pool" in search:
    stage = "finished"
  else:
    stage = f"running: {decided} of {layers} mixops decided"
  rows = [("search", stage),
          ("retraining", f"{len(run.retrained)} network(s) retrained" if run.retrained else _PENDING),
          ("export and latency", "finished" if run.exported else _PENDING),
          ("pipeline", "finished" if run.outcome else _PENDING)]
  return _table(("stage", "state"), rows)


def _settings(search: dict) -> str:
  config, constraint = search["config"], search["constraint"]
  rows = [("space", f"{search['space_name']} ({len(search['space']['layers'])} mixops, width "
                    f"{search['space']['width']})"),
          ("input", f"{search.get('input_shape')}, {search.get('num_classes')} classes, data "
                    f"{config['data'].get('dataset')}"),
          ("constraint", f"{constraint['kind']}, budget {_quantity(constraint['budget'], constraint)} (the "
                         f"space spans {_quantity(constraint['min'], constraint)} to "
                         f"{_quantity(constraint['max'], constraint)}; "
                         f"{constraint['feasible_architectures']} architectures feasible)"),
          ("search", f"training {config['training']}, search {config['search']}, pool "
                     f"P={config['pool_size']}, samples S={config['num_samples']}, warm-up "
                     f"Tw={config['warmup_epochs']}, "
                     f"interval Ti={config['interval_epochs']} epochs"),
          ("supergraph training", f"batch {config['batch_size']}, steps per epoch "
                                  f"{config['steps_per_epoch'] or 'one pass'}, optimizer "
                                  f"{_compact(config['optimizer'])}"),
          ("potentials", f"{config['eval_batches']} batches of {config['eval_batch_size']} validation "
                         f"images, BN {config['bn_mode']}, sampling {config['sampling']}")]
  timings = search.get("timings")
  if timings:
    rows.append(("time so far", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())))
  versions = search.get("versions")
  details = (f"<details><summary>Every setting (config.json)</summary><pre>"
             f"{_e(json.dumps(config, indent=1, sort_keys=True))}</pre></details>")
  if versions:
    details += f"<p>Versions: {_e(_compact(versions))}</p>"
  return _table(("setting", "value"), rows) + details


def _search_front(work_dir, search) -> str:
  text = ("<p>Every scored candidate: its potential (mean validation accuracy of its sampled "
          "completions) against the mean predicted cost of those completions. The front joins the whole "
          "networks of the last interval that no other beats on both.</p>")
  return text + _picture(work_dir, SEARCH_FRONT_PNG, "potential against predicted cost")


def _intervals(work_dir, search) -> str:
  intervals = search.get("intervals") or []
  if not intervals:
    method = search["config"]["search"]
    return _pending("no interval scored yet" if method == "pcnas" else f"{method} search: no intervals")
  constraint, space = search["constraint"], search["space"]
  parts = [_picture(work_dir, SEARCH_PNG, "pool potentials and costs per interval")]
  for record in intervals:
    costs = record.get("pool_costs") or [None] * len(record["pool"])
    rows = [(rank, space_lib.path_to_string(member), _ops(space, member), _number(potential),
             _quantity(cost, constraint))
            for rank, (member, potential, cost) in enumerate(zip(record["pool"], record["pool_potentials"],
                                                                 costs))]
    parts.append(f"<h3>Mixop {record['interval'] + 1}: {len(record['candidates'])} candidates scored, "
                 f"pool of {len(record['pool'])}</h3>")
    parts.append(_table(("rank", "partial", "operators", "potential", "cheapest completion"), rows))
  return "".join(parts)


def _chosen(work_dir, search) -> str:
  chosen = search.get("chosen")
  if not chosen:
    return _pending("the search has not finished")
  constraint = search["constraint"]
  rows = [("architecture", f"{chosen['arch_string']}: {', '.join(chosen['arch'])}"),
          ("potential", _number(chosen["potential"])),
          (f"predicted {constraint['kind']}", _quantity(chosen[constraint["prediction_key"]], constraint)),
          ("params", _count(chosen["params"])), ("FLOPs", _count(chosen["flops"]))]
  return _picture(work_dir, CHOSEN_PNG, "the chosen network, Figure 3 style") + _table(("", ""), rows)


def _latency_table(work_dir, search, exported) -> str:
  table = search["constraint"].get("table")
  if not table:
    return (f"<p>No latency table: the {_e(search['constraint']['kind'])} constraint is computed exactly "
            f"from the architecture.</p>")
  validation = table.get("validation") or {}
  networks = validation.get("networks") or []
  rows = [("backend", table.get("backend")), ("device", table.get("device")),
          ("batch, resolution", f"{table.get('batch')}, {table.get('resolution')}"),
          ("calibration", f"{validation.get('model')} fit on {len(networks)} whole networks, "
                          f"cross-validated RMSE {_number(validation.get('cv_rmse_ms'))} ms")]
  if networks:
    errors = [abs(n["predicted_ms"] / n["measured_ms"] - 1) for n in networks if n["measured_ms"]]
    rows.append(("fit on those networks", f"mean error {100 * sum(errors) / len(errors):.2f}%, "
                                          f"max {100 * max(errors):.2f}% (in sample)"))
  tflite = (exported or {}).get("formats", {}).get("tflite")
  if tflite:
    measured, predicted = tflite["latency"]["min_ms"], exported.get("predicted_latency_ms")
    error = f" (the table is {100 * (predicted / measured - 1):+.1f}% off)" if predicted and measured else ""
    rows.append(("the exported chosen network", f"measured {_number(measured)} ms, predicted "
                                                f"{_number(predicted)} ms{error}"))
  return _picture(work_dir, LATENCY_PNG, "measured against predicted latency") + _table(("", ""), rows)


def _retrained(work_dir, search, retrained) -> str:
  if not retrained:
    return _pending("no network retrained yet")
  constraint = search["constraint"]
  rows = [(m["rank"], m["arch_string"], _number(m.get("test_top1")), _number(m.get("measured_latency_ms")),
           _quantity(m.get(constraint["prediction_key"]), constraint), _number(m.get("potential")),
           _count(m["params"]), _count(m["flops"]))
          for m in retrained]
  headers = ("pool rank", "architecture", "test top-1", "measured latency (ms)",
             f"predicted {constraint['kind']}", "potential", "params", "FLOPs")
  picture = _picture(work_dir, RETRAINED_FRONT_PNG, "test accuracy against measured latency")
  return picture + _table(headers, rows)


def _export(exported) -> str:
  if not exported:
    return _pending("not exported yet")
  rows = []
  for name, entry in exported["formats"].items():
    latency = entry.get("latency", {})
    if "path" not in entry:  # the Keras model: the reference the exports are checked against
      rows.append((name, "model.keras (the reference)", "", _number(latency.get("min_ms")),
                   _number(latency.get("median_ms"))))
      continue
    rows.append((name, entry["path"], "ok" if entry.get("parity_ok") else entry.get("parity_failure"),
                 _number(latency.get("min_ms")), _number(latency.get("median_ms"))))
  return (f"<p>{_e(exported['arch_string'])}, input {_e(exported['input_contract'])}, timed at batch "
          f"{exported['batch']}.</p>" +
          _table(("format", "file", "parity", "latency min (ms)", "latency median (ms)"), rows))


def _outcome(outcome) -> str:
  if not outcome:
    return _pending("the pipeline has not finished")
  verdict = ('<span class="within">within the budget</span>' if outcome["within_budget"] else
             '<span class="over">over the budget</span>')
  budget = ("" if outcome.get("budget_ms") is None else
            f" against a budget of {_number(outcome['budget_ms'])} ms")
  measured = f"{_number(outcome['latency_ms'])} ms measured{budget}"
  rows = [("architecture", outcome["arch"]), ("test top-1", _number(outcome["test_top1"])),
          ("measured latency", f"{_number(outcome['latency_ms'])} ms at batch {outcome['latency_batch']} "
                               f"(minimum of {outcome['latency_runs']} runs){budget}"),
          ("predicted latency", f"{_number(outcome.get('predicted_latency_ms'))} ms"),
          ("wall time", f"{outcome['wall_s']} s")]
  rows += [(f"file: {name}", path) for name, path in outcome.get("paths", {}).items()]
  return f"<p>The chosen network is {verdict}: {_e(measured)}.</p>" + _table(("", ""), rows)


def _tensorboard(work_dir) -> str:
  log_dir = os.path.join(files.absolute(work_dir), "tensorboard")
  return (f"<p>Every scored candidate and every retrained network is a session of the HParams "
          f"dashboard (parallel coordinates, scatter plots): <code>tensorboard --logdir "
          f"{_e(log_dir)}</code></p>")


# Pieces -------------------------------------------------------------------------------------------

_PENDING = "pending"


def _section(section_id, title, body) -> str:
  return f'<section id="{section_id}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _picture(work_dir, name, alt) -> str:
  path = os.path.join(work_dir, name)
  if not files.exists(path):
    return _pending(f"{name} not drawn yet")
  data = base64.b64encode(files.read_bytes(path)).decode("ascii")
  return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}" title="{_e(name)}">'


def _table(headers, rows) -> str:
  head = "" if not any(headers) else "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"
  cells = "".join("<tr>" + "".join(_cell(value) for value in row) + "</tr>" for row in rows)
  return f"<table>{head}{cells}</table>"


class _Figure(str):
  """A number as text (`_number`, `_quantity`, `_count`): right-aligned in a table, unlike a name that
  happens to be digits (an architecture string such as `11202120`)."""


def _cell(value) -> str:
  numeric = isinstance(value, (_Figure, int, float)) and not isinstance(value, bool)
  return f'<td class="number">{_e(value)}</td>' if numeric else f"<td>{_e(value)}</td>"


def _pending(text) -> str:
  return f'<p class="pending">{_e(text)}.</p>'


def _quantity(value, constraint) -> str:
  return "n/a" if value is None else _Figure(figures.quantity(value, constraint["unit"]))


def _number(value) -> str:
  return "n/a" if value is None else _Figure(f"{value:.4g}" if isinstance(value, float) else value)


def _count(value) -> str:
  return _Figure(f"{value:,}")


def _ops(space, path) -> str:
  return ", ".join(space["layers"][index]["choices"][int(c)] for index, c in enumerate(path))


def _compact(mapping) -> str:
  return ", ".join(f"{k} {v}" for k, v in mapping.items())


def _e(value) -> str:
  return html.escape(str(value))
