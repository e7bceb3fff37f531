"""keras-tuner's Oracle, gRPC service and client without Keras or TensorFlow: import this module first.

`import keras_tuner` imports Keras, and the only Keras backend installed here is TensorFlow (the numpy
backend imports JAX): seconds of start-up, hundreds of MB and TensorFlow's threads in every process of a
simulation that never computes anything. The pieces of keras-tuner a chief and its clients run (the
Oracle, trials, hyperparameters, metrics, protos, the servicer and `OracleClient`) use Keras only to
(de)serialise hyperparameters and to guess a metric's direction by its Keras name. So this module
registers `keras_tuner`, `keras_tuner.src` and `keras_tuner.src.backend` as bare packages on the real
directories (their `__init__`s, which import every tuner and Keras, do not run) with a backend that
serialises as tf.keras' legacy format does and knows no Keras metric, then exposes the few names
`pcnas_tf.searcher.oracle` takes from the top-level package. Importing it after Keras or keras-tuner
were imported (a test process) does nothing: the real ones are used.
"""

import importlib.util
import os
import sys
import types


class _NoKerasObject:
  """Nothing is an instance of a Keras metric or loss here."""


def _serialize(obj):
  return {"class_name": type(obj).__name__, "config": obj.get_config()}


def _deserialize(config, custom_objects=None, module_objects=None):
  objects = dict(module_objects or {}, **(custom_objects or {}))
  return objects[config["class_name"]].from_config(config["config"])


def _no_such_keras_name(identifier):
  raise ValueError(f"No Keras metric or loss here: {identifier!r}")


def _package(name, path, **attributes):
  module = types.ModuleType(name)
  module.__path__ = [path]
  module.__dict__.update(attributes)
  sys.modules[name] = module
  return module


def _module(name, **attributes):
  module = types.ModuleType(name)
  module.__dict__.update(attributes)
  sys.modules[name] = module
  return module


def install():
  if "keras_tuner" in sys.modules or "keras" in sys.modules:
    return
  root = os.path.dirname(importlib.util.find_spec("keras_tuner").origin)  # finds; runs no __init__
  package = _package("keras_tuner", root)
  package.src = _package("keras_tuner.src", os.path.join(root, "src"))
  config = _module("keras_tuner.src.backend.config", multi_backend=lambda: True, backend=lambda: "numpy")
  keras = _module(
      "keras_tuner.src.backend.keras",
      utils=types.SimpleNamespace(serialize_keras_object=_serialize, deserialize_keras_object=_deserialize),
      metrics=types.SimpleNamespace(deserialize=_no_such_keras_name, Metric=_NoKerasObject),
      losses=types.SimpleNamespace(deserialize=_no_such_keras_name, Loss=_NoKerasObject))
  backend = _package("keras_tuner.src.backend", os.path.join(root, "src", "backend"), config=config,
                     keras=keras)
  from keras_tuner.src.backend import io  # pylint: disable=g-import-not-at-top  (plain files: no TF)
  backend.io = io
  from keras_tuner.src.engine import objective, oracle  # pylint: disable=g-import-not-at-top
  package.Oracle, package.Objective, package.synchronized = oracle.Oracle, objective.Objective, \
      oracle.synchronized


install()
