"""Tests of the HParams sessions: read back through TensorBoard's own data API and served by a real
`tensorboard --logdir` on 127.0.0.1."""

import contextlib
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from tensorboard import context
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins.hparams import metadata

from pcnas_tf.report import hparams
from pcnas_tf.searcher import loop as search_lib
from pcnas_tf.space import cost
from tests import helpers as testing

SERVER_TIMEOUT_S = 120  # the whole TensorBoard test: start-up, first load of the logdir, requests


def read_sessions(log_dir):
  """{session run: {"hparams": {name: value}, "metrics": {tag: last value}}} of every HParams session
  under `log_dir`, and the experiment's hparam and metric names, read with TensorBoard's data provider."""
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(log_dir)
  multiplexer.Reload()
  provider = data_provider.MultiplexerDataProvider(multiplexer, log_dir)
  ctx = context.RequestContext()
  tensors = provider.list_tensors(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
  sessions, experiment = {}, None
  for run, tags in tensors.items():
    if metadata.EXPERIMENT_TAG in tags:
      experiment = metadata.parse_experiment_plugin_data(tags[metadata.EXPERIMENT_TAG].plugin_content)
    if metadata.SESSION_START_INFO_TAG in tags:
      content = tags[metadata.SESSION_START_INFO_TAG].plugin_content
      info = metadata.parse_session_start_info_plugin_data(content)
      sessions[run] = {"hparams": {name: getattr(value, value.WhichOneof("kind"))
                                   for name, value in info.hparams.items()}, "metrics": {}}
  scalars = provider.read_scalars(ctx, experiment_id="", plugin_name="scalars", downsample=1000)
  for run, tags in scalars.items():
    if run in sessions:
      sessions[run]["metrics"] = {tag: data[-1].value for tag, data in tags.items()}
  names = None if experiment is None else ({h.name for h in experiment.hparam_infos},
                                           {m.name.tag for m in experiment.metric_infos})
  return sessions, names


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
  """A tiny search's work directory and result."""
  root = tmp_path_factory.mktemp("search")
  config = testing.tiny_search_config(str(root))
  work_dir = str(root / "run")
  return work_dir, search_lib.run_search(config, work_dir, progress=False)


def test_one_session_per_scored_candidate_with_its_values(searched):
  work_dir, result = searched
  sessions, (hparam_names, metric_names) = read_sessions(os.path.join(work_dir, "tensorboard"))
  space = testing.tiny_space()
  expected = {}
  for record in result["intervals"]:
    for candidate, potential, costs in zip(record["candidates"], record["potentials"],
                                           record["candidate_costs"]):
      session = hparams.candidate_session(record["interval"], candidate)
      expected[session] = (record, candidate, potential, costs)
  assert set(sessions) == set(expected)
  assert len(sessions) == sum(len(r["candidates"]) for r in result["intervals"]) == 3 + 6 + 4
  assert any(math.isnan(e[2]) for e in expected.values())  # both kinds of candidate are checked
  for run, (record, candidate, potential, costs) in expected.items():
    values, metrics = sessions[run]["hparams"], sessions[run]["metrics"]
    assert values[hparams.INTERVAL] == record["interval"] + 1 and values[hparams.KIND] == hparams.CANDIDATE
    assert values[hparams.KEPT] == (candidate in record["pool"])
    ops = {hparams.mixop_hparam(i): space.layers[i].choices[c] for i, c in enumerate(candidate)}
    assert {k: v for k, v in values.items() if k.startswith("mixop_")} == ops
    if math.isnan(potential):  # no completion within the budget: nothing was measured
      assert costs == {} and metrics == {}
      continue
    assert metrics[hparams.POTENTIAL] == pytest.approx(potential, rel=1e-6)
    assert set(costs) == {"predicted_flops", "params", "flops"}
    for name, value in costs.items():
      assert metrics[name] == pytest.approx(value, rel=1e-6)
  assert {hparams.mixop_hparam(i) for i in range(3)} | {hparams.INTERVAL, hparams.KEPT} <= hparam_names
  assert {hparams.POTENTIAL, "predicted_flops", hparams.TEST_TOP1, hparams.MEASURED_LATENCY} <= metric_names


def test_the_last_intervals_candidates_have_their_own_exact_cost(searched):
  """Whole networks complete only to themselves: their mean cost is their cost, counted here anew."""
  work_dir, result = searched
  sessions, _ = read_sessions(os.path.join(work_dir, "tensorboard"))
  space, last = testing.tiny_space(), result["intervals"][-1]
  scored = [c for c, p in zip(last["candidates"], last["potentials"]) if not math.isnan(p)]
  assert scored
  for candidate in scored:
    counts = cost.arch_cost(space.arch_from_indices(candidate), space, tuple(result["input_shape"]),
                            result["num_classes"])
    metrics = sessions[hparams.candidate_session(last["interval"], candidate)]["metrics"]
    assert (metrics["flops"], metrics["params"]) == (counts.flops, counts.params)


def test_a_retrained_session_written_twice_is_replaced(tmp_path):
  space = testing.tiny_space()
  member = {"rank": 1, "arch": list(space.arch_from_indices((2, 0, 1))), "potential": 0.4, "test_top1": 0.5,
            "measured_latency_ms": None, "predicted_latency_ms": 1.25, "params": 10, "flops": 20}
  hparams.write_retrained(str(tmp_path), space, [member])
  hparams.write_retrained(str(tmp_path), space, [{**member, "test_top1": 0.75}])
  sessions, _ = read_sessions(str(tmp_path))
  assert list(sessions) == [hparams.retrained_session(1, "201")]
  session = sessions[hparams.retrained_session(1, "201")]
  assert session["hparams"][hparams.KIND] == hparams.RETRAINED
  assert session["hparams"][hparams.mixop_hparam(0)] == "MBConv_6_5"
  assert session["metrics"] == {"potential": pytest.approx(0.4), "test_top1": 0.75,
                                "predicted_latency_ms": 1.25, "params": 10, "flops": 20}
  assert len(os.listdir(tmp_path / hparams.retrained_session(1, "201"))) == 1  # one event file


def _post(port, route, body):
  request = urllib.request.Request(f"http://127.0.0.1:{port}/data/plugin/hparams/{route}",
                                   data=json.dumps(body).encode(), method="POST",
                                   headers={"Content-Type": "application/json"})
  with urllib.request.urlopen(request, timeout=10) as response:
    return json.loads(response.read())


def _session_groups(port):
  return _post(port, "session_groups", {
      "experimentName": "", "startIndex": 0, "sliceSize": 1000, "colParams": [],
      "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})


@contextlib.contextmanager
def _tensorboard(log_dir, port, log_path):
  """`tensorboard --logdir` on 127.0.0.1:`port` only, stopped (killed if need be) on leaving."""
  with open(log_path, "w") as log:
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", f"--logdir={log_dir}",
                               "--host=127.0.0.1", f"--port={port}", "--load_fast=false",
                               "--reload_interval=1"], stdout=log, stderr=subprocess.STDOUT)
    try:
      yield server
    finally:
      server.terminate()
      try:
        server.wait(timeout=20)
      except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def test_tensorboard_serves_the_candidates_in_its_hparams_plugin(searched, tmp_path):
  work_dir, result = searched
  expected = sum(len(r["candidates"]) for r in result["intervals"])
  port, groups = testing.free_port(), None
  with _tensorboard(os.path.join(work_dir, "tensorboard"), port, tmp_path / "tensorboard.log") as server:
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
      try:
        groups = _session_groups(port)
        if groups.get("totalSize") == expected:
          break
      except (urllib.error.URLError, ConnectionError):
        pass  # not listening yet, or the logdir not loaded yet
      time.sleep(0.5)
    experiment = _post(port, "experiment", {"experimentName": ""})
  log_tail = (tmp_path / "tensorboard.log").read_text()[-2000:]
  assert groups is not None and groups["totalSize"] == expected, log_tail
  names = {group["name"] for group in groups["sessionGroups"]}
  assert names == {hparams.candidate_session(r["interval"], c)
                   for r in result["intervals"] for c in r["candidates"]}
  assert {hparams.mixop_hparam(i) for i in range(3)} <= {h["name"] for h in experiment["hparamInfos"]}
  assert hparams.POTENTIAL in {m["name"]["tag"] for m in experiment["metricInfos"]}
