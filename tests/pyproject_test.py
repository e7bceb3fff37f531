"""The package's metadata: pyproject.toml pins what requirements.txt pins, and every binary is a
console script that exists. (`pip install .` into a fresh virtual environment is checked by hand: the
README's "From Python" gives the commands.)"""

import ast
import os
import re
import tomllib

from tests import helpers as testing


def pins(lines):
  """{package: version} of `name==version` requirement lines (comments and blanks skipped)."""
  found = {}
  for line in lines:
    line = line.split("#")[0].strip()
    if line:
      name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line).groups()
      found[name.lower().replace("_", "-")] = version
  return found


def project():
  with open(os.path.join(testing.REPO, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)["project"]


def test_pyproject_pins_exactly_what_requirements_txt_pins():
  with open(os.path.join(testing.REPO, "requirements.txt")) as f:
    required = pins(f)
  meta = project()
  runtime = pins(meta["dependencies"])
  extras = {}
  for group in meta["optional-dependencies"].values():
    extras.update(pins(group))
  assert {**runtime, **extras} == required  # every pin in both, at one version
  assert not set(runtime) & {"pytest", "nbclient", "nbformat"}  # test tools are an extra


def test_every_binary_is_a_console_script_of_its_run_function():
  scripts = project()["scripts"]
  targets = set(scripts.values())
  binaries = [(package, name[:-3]) for package in ("pcnas_tf", "export")
              for name in os.listdir(os.path.join(testing.REPO, package)) if name.endswith("_main.py")]
  assert targets == {f"{package}.{module}:run" for package, module in binaries}
  for package, module in binaries:
    with open(os.path.join(testing.REPO, package, f"{module}.py")) as f:
      tree = ast.parse(f.read())
    assert "run" in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}, module
  assert all(name.startswith("pcnas-") for name in scripts)
