"""Benchmark: what the report costs a search: HParams sessions, pictures and report.html.

  .venv/bin/python -m bench.report_overhead            # the demo search (flags/demo.cfg), shortened
  .venv/bin/python -m bench.report_overhead --tiny     # the tests' tiny search (3 mixops, 8x8 images)

Runs the search in a fresh work directory; the search itself counts the time spent on the report
(`timings["report_s"]`: HParams, pictures and page after every interval and at the end). Then writes
every interval's HParams sessions again, into a scratch directory, to time them alone. Ends with one
JSON line.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from absl import flags

from pcnas_tf.cli import search_flags
from pcnas_tf.report import hparams
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.space import search_space as space_lib

_DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags", "demo.cfg")


def _config(tiny, root):
  if tiny:
    from tests import helpers as testing  # pylint: disable=g-import-not-at-top
    return testing.tiny_search_config(root)
  flags.FLAGS([sys.argv[0], f"--flagfile={_DEMO}", "--warmup_epochs=1", "--steps_per_epoch=20",
               "--num_samples=4"])
  return search_flags.config_from_flags()


def _count_cpu_of_report() -> list:
  """Counts the process' CPU seconds in `Search._report` (all threads: on a shared machine, a steadier
  figure than wall time); returns the list they are appended to."""
  spent, report = [], search_lib.Search._report  # pylint: disable=protected-access

  def counted(search, *args, **kwargs):
    start = time.process_time()
    report(search, *args, **kwargs)
    spent.append(time.process_time() - start)

  search_lib.Search._report = counted  # pylint: disable=protected-access
  return spent


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tiny", action="store_true", help="the tests' tiny search instead of the demo's")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as root:
    config = _config(args.tiny, root)
    report_cpu = _count_cpu_of_report()
    start, cpu = time.time(), time.process_time()
    result = search_lib.run_search(config, os.path.join(root, "run"), progress=False)
    search_s, search_cpu_s = time.time() - start, time.process_time() - cpu
    space = space_lib.SearchSpace.from_json(result["space"])
    start = time.time()
    sessions = sum(hparams.write_candidates(os.path.join(root, "again"), space, record)
                   for record in result["intervals"])
    hparams_s = time.time() - start
  report_s, report_cpu_s = result["timings"]["report_s"], sum(report_cpu)
  figures = {"search_s": round(search_s, 2), "report_s": round(report_s, 2),
             "report_fraction": round(report_s / search_s, 4), "search_cpu_s": round(search_cpu_s, 2),
             "report_cpu_s": round(report_cpu_s, 2), "hparams_s": round(hparams_s, 2),
             "sessions": sessions, "hparams_ms_per_session": round(1000 * hparams_s / sessions, 2),
             "pictures_and_page_s": round(report_s - hparams_s, 2), "tiny": args.tiny}
  print(f"search {search_s:.1f} s, of which the report {report_s:.2f} s ({100 * report_s / search_s:.1f}%; "
        f"CPU {report_cpu_s:.2f} of {search_cpu_s:.1f} s): {sessions} HParams sessions {hparams_s:.2f} s, "
        f"pictures and page {report_s - hparams_s:.2f} s")
  print(json.dumps(figures))


if __name__ == "__main__":
  main()
