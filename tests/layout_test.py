"""The layout's rules, checked from the sources: no import cycles (lazy imports included), no two
modules of one name, no tests inside the packages, and no flags read or defined by library code.

  .venv/bin/python -m pytest -q tests/layout_test.py   # prints the cycle, module or flag that breaks one
"""

import ast
import collections
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pcnas_tf", "export")


def _modules():
  """{dotted name: path} of every module of the packages."""
  found = {}
  for package in PACKAGES:
    for root, _, names in os.walk(os.path.join(REPO, package)):
      for name in names:
        if name.endswith(".py"):
          path = os.path.join(root, name)
          dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
          found[dotted.removesuffix(".__init__")] = path
  return found


def _imports(path, modules):
  """The package modules `path` imports, at the top or inside functions."""
  targets = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      targets.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        full = f"{node.module}.{alias.name}"
        targets.add(full if full in modules else node.module)
  return {t for t in targets if t in modules and t not in PACKAGES}


def _cycle(graph):
  """One import cycle as a list of modules, or None (depth-first search)."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for target in sorted(graph[node]):
      if state.get(target) == "open":
        return stack[stack.index(target):] + [target]
      if target not in state:
        found = visit(target)
        if found:
          return found
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_import_cycles():
  modules = _modules()
  graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
  cycle = _cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_constructed_cycle():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_two_modules_share_a_name():
  names = collections.Counter()
  for top in PACKAGES + ("bench", "tests"):
    for root, _, files in os.walk(os.path.join(REPO, top)):
      names.update(n for n in files if n.endswith(".py") and n != "__init__.py")
  assert [n for n, count in names.items() if count > 1] == []


def test_tests_live_in_tests():
  inside = [p for p in _modules().values() if p.endswith("_test.py")]
  bench = [n for n in os.listdir(os.path.join(REPO, "bench")) if n.endswith("_test.py")]
  assert inside + bench == []


@pytest.mark.parametrize("package", PACKAGES)
def test_library_code_reads_no_flags(package):
  """Only binaries (`*_main.py`) and the flag modules (`pcnas_tf/cli/`) touch absl flags."""
  offenders = []
  for name, path in _modules().items():
    if not name.startswith(package) or name.endswith("_main") or ".cli" in name:
      continue
    source = open(path).read()
    if "from absl import flags" in source or "flags.FLAGS" in source:
      offenders.append(name)
  assert offenders == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_binary_is_named_like_a_sub_package(package):
  """Bazel writes binary X of a package to bazel-bin/<package>/X, which hides a sub-package X/ in the
  binary's runfiles (`bazel run //pcnas_tf:search` could not import pcnas_tf.search.*)."""
  root = os.path.join(REPO, package)
  binaries = {name[:-len("_main.py")] for name in os.listdir(root) if name.endswith("_main.py")}
  packages = {name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name))}
  assert binaries & packages == set()
