"""Main of the py_test targets: runs pytest on the test files given as arguments, exits with its status.

The targets come from //tools:pytest.bzl. Bazel starts this file in the runfiles tree of the workspace, which
holds the repository root's conftest.py and pytest.ini, so that fixtures, markers and warning filters apply as
with `make test`; tests marked slow run too. From the Bazel test environment:
  * TEST_TMPDIR: pytest's tmp_path directories are made under it;
  * XML_OUTPUT_FILE: pytest writes its JUnit report there (Bazel shows the test cases);
  * TESTBRIDGE_TEST_ONLY (`bazel test --test_filter=EXPR`): passed on as `pytest -k EXPR`; a file with no test
    matching EXPR passes (as with `bazel test //... --test_filter=...`), any other empty collection fails.
Extra pytest options: `bazel test //pcnas_tf:space_test --test_arg=-vv`.
"""

import os
import sys

import pytest


def main(argv) -> int:
  args = ["-p", "no:cacheprovider"]  # The runfiles tree is no place for .pytest_cache.
  tmp = os.environ.get("TEST_TMPDIR")
  if tmp:
    args += ["--basetemp", os.path.join(tmp, "pytest")]
  xml = os.environ.get("XML_OUTPUT_FILE")
  if xml:
    args += ["--junitxml", xml]
  only = os.environ.get("TESTBRIDGE_TEST_ONLY")
  if only:
    args += ["-k", only]
  status = int(pytest.main(args + list(argv)))
  if only and status == pytest.ExitCode.NO_TESTS_COLLECTED:
    return 0
  return status


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
