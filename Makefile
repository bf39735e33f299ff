# plantml: `make train` and `make test` work on a fresh clone (they create .venv first).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install train test test-data test-all lint format clean

help:
	@echo "make train      train the default experiment (synthetic fleet, failure within 24 h)"
	@echo "make test       fast test suite (a few minutes on 2 cores)"
	@echo "make test-data  tests on the real datasets in ../shared/data"
	@echo "make lint       ruff check + format check"
	@echo "make test-all   every test, real-data ones included"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python >= 3.11); set PYTHON=..."; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/plantml-train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

test-data: $(STAMP)
	$(BIN)/python -m pytest -q -m real_data $(ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

format: $(STAMP)
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
