"""Tests of predictions, ranges and budgets; tables are built as data, without TensorFlow."""

import re

import pytest

from pcnas_tf.space import cost
from pcnas_tf import errors
from pcnas_tf.constraints import sampling
from pcnas_tf.space import search_space as space_lib
from pcnas_tf.constraints import constraint
from pcnas_tf.constraints import latency_table as table_lib

SPACE = space_lib.SearchSpace(
    name="tiny", stem_channels=8, stem_stride=1, first_op=None,
    layers=(space_lib.LayerSpec(8, 1, ("Identity", "MBConv_3_3")),
            space_lib.LayerSpec(16, 2, ("Identity", "MBConv_3_3", "MBConv_6_5"))),
    head_channels=16, activation="relu")
OPS_MS = [[0.0, 1.5], [0.25, 2.0, 4.0]]


def _table(ops_ms=OPS_MS, base_ms=1.0):
  return table_lib.LatencyTable({
      "metadata": {"space": "tiny", "space_fingerprint": SPACE.fingerprint()},
      "choices": [list(layer.choices) for layer in SPACE.layers],
      "measured": {"ops_ms": [[2 * v for v in row] for row in ops_ms], "base_ms": 3.0},
      "calibrated": {"ops_ms": ops_ms, "base_ms": base_ms, "scale": 1.0}})


def test_predict_is_base_plus_one_entry_per_layer():
  table = _table()
  assert constraint.predict(("MBConv_3_3", "MBConv_6_5"), table) == 1.0 + 1.5 + 4.0
  assert constraint.predict(("Identity", "Identity"), table, calibrated=False) == 3.0 + 0.0 + 0.5


def test_predict_rejects_an_operator_not_in_the_table():
  with pytest.raises(errors.UserError, match="MBConv_6_5.*layer 0"):
    constraint.predict(("MBConv_6_5", "Identity"), _table())


def test_range_of_space_and_partial_model():
  latency = constraint.make_constraint("latency", SPACE, table=_table())
  assert latency.range() == pytest.approx((1.25, 6.5))
  assert latency.range(("MBConv_3_3",)) == pytest.approx((2.75, 6.5))


@pytest.mark.parametrize("spec, budget", [("3ms", 3.0), ("3.5 ms", 3.5), (0.4, 1.25 + 0.4 * 5.25),
                                          ("0.4", 1.25 + 0.4 * 5.25), ("40%", 1.25 + 0.4 * 5.25),
                                          ("100%", 6.5), (0, 1.25)])
def test_budgets_absolute_fraction_and_percent(spec, budget):
  latency = constraint.make_constraint("latency", SPACE, table=_table())
  assert latency.resolve_budget(spec) == pytest.approx(budget)


def test_budget_below_minimum_states_the_minimum():
  latency = constraint.make_constraint("latency", SPACE, table=_table())
  with pytest.raises(sampling.BudgetError, match=r"minimum achievable latency.* 1\.25 ms"):
    latency.resolve_budget("1ms")


@pytest.mark.parametrize("spec", ["12", "fast", "150%", 1.5, "3s"])
def test_unreadable_budgets_are_user_errors(spec):
  latency = constraint.make_constraint("latency", SPACE, table=_table())
  with pytest.raises(errors.UserError, match="[Bb]udget"):
    latency.resolve_budget(spec)


def test_a_fraction_above_one_has_one_wording_however_written():
  latency = constraint.make_constraint("latency", SPACE, table=_table())
  messages = []
  for spec in ("1.5", "150%", 1.5):
    with pytest.raises(errors.UserError) as raised:
      latency.resolve_budget(spec)
    messages.append(str(raised.value).replace(repr(spec), "SPEC"))
  assert len(set(messages)) == 1 and "outside the fractions 0 to 1" in messages[0]


def test_flops_constraint_matches_cost_module():
  flops = constraint.make_constraint("flops", SPACE, input_shape=(16, 16, 3), num_classes=10)
  arch = ("MBConv_3_3", "MBConv_6_5")
  assert flops.predict(arch) == cost.arch_cost(arch, SPACE, (16, 16, 3), 10).flops
  assert flops.resolve_budget("1M") == 1e6


def test_sampler_draws_only_feasible_architectures():
  latency = constraint.make_constraint("latency", SPACE, table=_table())
  sampler = latency.sampler(latency.resolve_budget("3ms"))
  paths = sampler.sample((), 20)
  assert all(latency.costs.predict(p) <= 3.0 for p in paths) and sampler.count() == 3


def test_latency_constraint_rejects_table_of_another_space():
  other = space_lib.macro_space(0.125)
  with pytest.raises(table_lib.TableError, match="space 'tiny'"):
    constraint.make_constraint("latency", other, table=_table())


def test_unknown_constraint_kind():
  with pytest.raises(errors.UserError, match="allowed: latency, flops, params"):
    constraint.make_constraint("energy", SPACE)


def test_partial_model_with_a_foreign_operator_is_a_user_error():
  latency = constraint.make_constraint("latency", SPACE, table=_table())
  with pytest.raises(errors.UserError, match="not allowed at layer 0"):
    latency.range(("MBConv_6_5",))


@pytest.mark.parametrize("budget, words", [
    ("999ms", r"is at or above the space's most expensive architecture \(6.5 ms\): it admits all 6 paths"),
    (0, r"admits only the space's cheapest architecture \(1.25 ms\)"),
    ("0.5", r"admits [2-5] of 6 paths"),
])
def test_the_budget_says_what_it_admits(budget, words):
  search = constraint.SearchConstraint(constraint.make_constraint("latency", SPACE, table=_table()),
                                       budget, (16, 16, 3), 10)
  assert re.search(words, search.budget_meaning())


def test_mean_costs_are_the_means_of_each_paths_latency_params_and_flops():
  latency = constraint.make_constraint("latency", SPACE, table=_table())
  search = constraint.SearchConstraint(latency, "100%", (16, 16, 3), 10)
  paths = [(0, 2), (1, 0), (1, 2)]
  described = [search.describe(SPACE.arch_from_indices(path)) for path in paths]
  means = search.mean_costs(paths)
  assert set(means) == {"predicted_latency_ms", "params", "flops"}
  for name in means:
    assert means[name] == pytest.approx(sum(d[name] for d in described) / len(paths))
  assert search.mean_costs([]) == {}
