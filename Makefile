# The two commands of the README. Both set the machine up first (idempotent, quick the second time).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup setup-test demo test check lint bench
setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

# Sets up, makes the demo's assets (drawn, synthesized, generated) and renders them to out/demo/.
demo: setup
	$(PY) examples/demo/make_assets.py
	$(VENV)/bin/avatarrender render examples/demo/segment.yaml -o out/demo

# Sets up with the test extras (chromium, Playwright, dask), lints, and runs the whole suite.
test: setup-test lint
	$(PY) -m pytest -q

# The unit tier: under a minute, no browser, nginx or network (an existing .venv: after `make demo`
# it adds the Python test packages alone, without the test machine's apt packages).
check:
	@$(PY) -c "import pytest" 2>/dev/null || $(VENV)/bin/pip install -q --disable-pip-version-check -c scripts/constraints.txt -e ".[test]"
	$(PY) -m pytest -q -m "not slow"

lint:
	$(VENV)/bin/ruff check avatarrender cli tests benchmarks examples
	$(VENV)/bin/ruff format --check avatarrender cli tests benchmarks examples

bench: setup
	$(PY) -m benchmarks.render_speed
