# Quick start: `make run` serves chatd on the embedded defaults; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-rolling lint setup setup-test frontend browser services bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.py
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP) frontend

frontend:
	bash scripts/setup_frontend.sh

browser:
	bash scripts/setup_browser.sh

services:
	bash scripts/ensure_redis.sh
	bash scripts/ensure_postgres.sh
	bash scripts/ensure_nginx.sh

run: setup
	$(BIN)/chatd serve $(ARGS)

setup-test: setup browser services

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup-test lint
	$(BIN)/python -m pytest $(ARGS)

test-rolling: setup-test
	$(BIN)/python -m pytest -m rolling -s tests/cluster/test_rolling_restart.py

bench: setup
	$(BIN)/python -m bench.ws_fanout

clean:
	rm -rf $(VENV) static/dist static/node_modules
