"""Latency: measurement backends, the lookup table and constraints (latency, FLOPs, params).

Start here:
  backends.py     how a model is timed: `tflite` (LiteRT + XNNPACK), `tf` (tf.function, XLA), `tensorrt`.
  table.py        the lookup table: per-(layer, op) timings, calibration, JSON file, resumable builds,
                  `get_or_build_table` (the cache the search uses).
  calibration.py  fitting the table to whole-network latencies (TuNAS' linear cost model).
  constraint.py   `predict(arch, table)`, min/max of a space or partial model, budgets, samplers.

Build a table from the command line with `python -m pcnas_tf.build_latency_table_main`.
"""

from pcnas_tf.latency.backends import BACKENDS
from pcnas_tf.latency.backends import BackendConfig
from pcnas_tf.latency.backends import make_backend
from pcnas_tf.latency.backends import Timing
from pcnas_tf.latency.constraint import check_budget
from pcnas_tf.latency.constraint import Constraint
from pcnas_tf.latency.constraint import KINDS
from pcnas_tf.latency.constraint import latency_cost_table
from pcnas_tf.latency.constraint import make_constraint
from pcnas_tf.latency.constraint import predict
from pcnas_tf.latency.constraint import resolve_budget
from pcnas_tf.latency.table import build_table
from pcnas_tf.latency.table import get_or_build_table
from pcnas_tf.latency.table import LatencyTable
from pcnas_tf.latency.table import load_table
from pcnas_tf.latency.table import random_archs
from pcnas_tf.latency.table import TableError
