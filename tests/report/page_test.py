"""Tests of report.html: its sections during and after a run, its embedded pictures, and the page as
headless Chromium (Debian's `chromium`) shows it: no console errors, every picture decoded, a
screenshot that is not blank."""

import base64
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib import image as mpimg

from pcnas_tf.report import figures
from pcnas_tf.report import page
from pcnas_tf.searcher import loop as search_lib
from tests import helpers as testing

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (the Debian package `chromium`; `make setup` installs it)")
CHROMIUM_TIMEOUT_S = 120
WINDOW = (1200, 2400)
# Set on <body> by the probe once the page has loaded: how many pictures the browser could not decode.
_PROBE = ("<script>window.addEventListener('load', () => { document.body.dataset.brokenImages = "
          "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length; });</script>")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
  root = tmp_path_factory.mktemp("search")
  work_dir = str(root / "run")
  return work_dir, search_lib.run_search(testing.tiny_search_config(str(root)), work_dir, progress=False)


def _later_stages(result):
  """What retraining, export and the pipeline add (their figures are made up here: the page shows
  whatever it is given)."""
  key = result["constraint"]["prediction_key"]
  retrained = tuple({"rank": rank, "arch": m["arch"], "arch_string": m["arch_string"],
                     "potential": m["potential"], "test_top1": 0.61 + 0.01 * rank,
                     "measured_latency_ms": 1.5 + rank, key: m[key], "params": m["params"],
                     "flops": m["flops"]}
                    for rank, m in enumerate(result["final_pool"]))
  chosen = retrained[0]
  exported = {"arch_string": chosen["arch_string"], "batch": 16, "predicted_latency_ms": None,
              "input_contract": "float32 [N, H, W, C], pixel / 127.5 - 1",
              "formats": {"keras": {"latency": {"min_ms": 2.0, "median_ms": 2.2}},
                          "tflite": {"path": "model.tflite", "parity_ok": True,
                                     "latency": {"min_ms": 1.5, "median_ms": 1.6, "runs": 40}}}}
  outcome = {"arch": chosen["arch_string"], "test_top1": 0.61, "latency_ms": 1.5, "latency_batch": 16,
             "latency_runs": 40, "budget_ms": None, "predicted_latency_ms": None, "within_budget": True,
             "wall_s": 12.0, "paths": {"tflite": "/somewhere/export/model.tflite"}}
  return page.Run(result, retrained, exported, outcome)


def _full_report(searched, tmp_path):
  """The search's work directory copied to `tmp_path`, with the later stages' page written there."""
  work_dir, result = str(tmp_path / "run"), searched[1]
  shutil.copytree(searched[0], work_dir)
  run = _later_stages(result)
  figures.plot_retrained_front(run.retrained, result["constraint"],
                               os.path.join(work_dir, page.RETRAINED_FRONT_PNG))
  return page.write_report(work_dir, run), run


def _section(html, section_id):
  match = re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.S)
  assert match, section_id
  return match.group(1)


def test_the_search_writes_a_page_with_every_section_and_its_pictures_embedded(searched):
  work_dir, result = searched
  html = open(os.path.join(work_dir, page.REPORT_FILE)).read()
  assert re.findall(r'<section id="([^"]+)"', html) == list(page.SECTIONS)
  images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
  assert len(images) == 3  # search front, pool per interval, chosen network; no latency table (FLOPs)
  for data in images:
    assert mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png").shape[2] in (3, 4)
  assert not re.search(r'(src|href)="(?!data:|#)', html) and "http" not in html.replace("http-equiv", "")
  assert "finished" in _section(html, "status")
  for record in result["intervals"]:
    assert f"Mixop {record['interval'] + 1}: {len(record['candidates'])} candidates scored" in html
  assert result["chosen"]["arch_string"] in _section(html, "chosen")
  for section_id in ("retrained", "export", "outcome"):
    assert 'class="pending"' in _section(html, section_id)


def test_a_running_search_shows_how_far_it_is_and_what_is_pending(searched, tmp_path):
  _, result = searched
  running = {key: value for key, value in result.items() if key not in ("final_pool", "chosen")}
  running["intervals"] = result["intervals"][:1]
  html = page.render(str(tmp_path), page.Run(running))
  assert "running: 1 of 3 mixops decided" in _section(html, "status")
  assert "Mixop 1:" in html and "Mixop 2:" not in html
  assert 'class="pending"' in _section(html, "chosen")


def test_after_the_later_stages_the_page_shows_accuracy_latency_and_files(searched, tmp_path):
  path, run = _full_report(searched, tmp_path)
  html = open(path).read()
  retrained = _section(html, "retrained")
  assert 'class="pending"' not in retrained and "data:image/png" in retrained
  for member in run.retrained:
    assert member["arch_string"] in retrained and f"{member['test_top1']:.4g}" in retrained
  assert "model.tflite" in _section(html, "export")
  outcome = _section(html, "outcome")
  assert "within the budget" in outcome and "0.61" in outcome and "1.5 ms" in outcome
  assert [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp")] == []


def _chromium(work_dir, *flags):
  """(stdout, the log's console lines) of headless Chromium on `flags`; its profile stays in work_dir."""
  done = subprocess.run(
      [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
       f"--user-data-dir={os.path.join(work_dir, 'chromium-profile')}", "--hide-scrollbars", *flags],
      capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@needs_chromium
def test_chromium_shows_the_page_without_console_errors_and_a_screenshot_holds_it(searched, tmp_path):
  path, _ = _full_report(searched, tmp_path)
  probed = tmp_path / "probed.html"  # a copy with the probe: the report itself runs no script
  probed.write_text(open(path).read().replace("</body>", _PROBE + "</body>"))
  dom, console = _chromium(str(tmp_path), "--dump-dom", probed.as_uri())
  assert console == []
  assert re.findall(r'<section id="([^"]+)"', dom) == list(page.SECTIONS)
  assert 'data-broken-images="0"' in dom and dom.count("<img ") == 4  # and the retrained networks' front
  screenshot = tmp_path / "report.png"
  _, console = _chromium(str(tmp_path), f"--screenshot={screenshot}",
                         f"--window-size={WINDOW[0]},{WINDOW[1]}", f"file://{os.path.abspath(path)}")
  print(f"screenshot of {path}: {screenshot}")
  assert console == []
  pixels = mpimg.imread(str(screenshot))[..., :3]
  assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
  ink = np.mean(np.any(pixels < 0.9, axis=-1))  # text, tables and plots, against the white page
  colour = np.mean(np.ptp(pixels, axis=-1) > 0.2)  # the plots' blues and oranges; text is grey
  assert 0.03 < ink < 0.6 and colour > 0.002, (ink, colour)
