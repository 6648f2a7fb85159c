# The two commands a newcomer needs (see README):
#   make demo   - the example webmail with the extension, on SQLite, at http://127.0.0.1:5000
#   make test   - installs Dovecot/PostgreSQL/Chromium if missing, then the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench venv

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m example_app

test: venv
	./scripts/install-system-deps.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: venv
	./scripts/install-system-deps.sh --bench
	$(PY) -m bench.fetch_bench
	$(PY) -m bench.poll_bench
