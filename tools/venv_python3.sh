#!/bin/sh
# Python interpreter of the Bazel py toolchain (//tools:venv_python_toolchain): the project's virtualenv.
#
# Bazel runs this file from the runfiles tree, where it is a symlink to tools/venv_python3.sh of the
# source tree; following that link finds the repository, hence its .venv, with no absolute path in the
# BUILD files and whatever PATH Bazel gives the process (`bazel test` starts from a minimal PATH).
# Without a .venv (`make setup` makes it), the first python3 on PATH is used, like Bazel's default.
self=$(readlink -f "$0")
venv_python="${self%/tools/*}/.venv/bin/python3"
if [ -x "$venv_python" ]; then
  exec "$venv_python" "$@"  # Not the link's target: Python finds its venv from this path.
fi
exec python3 "$@"
