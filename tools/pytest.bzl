"""pytest_test: a py_test for pytest-style test files (plain test_ functions, fixtures)."""

def pytest_test(name, srcs, deps = [], data = [], args = [], size = "large", **kwargs):
    """A py_test running pytest on `srcs` (pytest-style test files) through //tools:pytest_runner.py.

    The repository root's conftest.py and pytest.ini are data of the test, so fixtures apply.
    """
    native.py_test(
        name = name,
        srcs = srcs + ["//tools:pytest_runner.py"],
        main = "//tools:pytest_runner.py",
        args = ["$(location %s)" % src for src in srcs] + args,
        deps = deps,
        data = data + ["//:pytest_config"],
        size = size,
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )
