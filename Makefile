# The two first commands: `make search` and `make test`. Both set everything up on a fresh machine
# (Debian packages, the .venv from requirements.txt) and are idempotent: set-up is skipped when done.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
DEBIAN_PACKAGES := bazel-bootstrap bazel-bootstrap-source dataset-fashion-mnist chromium
APT_STAMP := $(VENV)/.debian-packages
VENV_STAMP := $(VENV)/.requirements-installed
# Run binaries and tests with the venv's python first on PATH (Bazel's py_binary uses `python3`).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup search test test-fast test-multiworker bazel-test clean

setup: $(VENV_STAMP) $(APT_STAMP)

$(APT_STAMP):
	@if ! dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1; then \
	  echo "Installing Debian packages: $(DEBIAN_PACKAGES)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_PACKAGES); \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV_STAMP): requirements.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

# The user's whole job: search, retrain the chosen network, test, export, time it against the budget.
search: setup
	$(PYTHON) -m pcnas_tf.pipeline_main --flagfile=flags/demo.cfg --flagfile=flags/retrain_demo.cfg

# Everything but the multi-process cluster tests (`make test-multiworker`, which CI runs as well).
test: setup
	$(PYTHON) -m pytest -q -m "not multiworker"

test-fast: setup
	$(PYTHON) -m pytest -q -m "not slow and not multiworker"

# The multi-process cluster tests on 127.0.0.1 (several TensorFlow processes each; ~5-10 minutes).
test-multiworker: setup
	$(PYTHON) -m pytest -q -m multiworker

bazel-test: setup
	bazel test //... --local_test_jobs=1

clean:
	-bazel clean
	rm -rf $(VENV) runs bazel-*
