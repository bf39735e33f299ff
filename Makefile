# plantml: `make train` and `make test` work on a fresh clone (they create .venv first).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install train notebook notebook-run test test-slow test-data test-all lint format clean

help:
	@echo "make train      train the default experiment (synthetic fleet, failure within 24 h)"
	@echo "make test       fast tier: unit tests and quick integration checks (1.5-3 min on 2 cores)"
	@echo "make test-slow  slow tier: training end to end, export recipes, tuning, DDP, notebook, edge wheel (5-12 min)"
	@echo "make test-data  tests on the real datasets in ../shared/data"
	@echo "make test-all   every test, real-data ones included"
	@echo "make notebook   open notebooks/quickstart.ipynb in Jupyter (installs it on first use)"
	@echo "make notebook-run  run the notebook top to bottom, headless, into outputs/quickstart.html"
	@echo "make lint       ruff check + format check"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python >= 3.11); set PYTHON=..."; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/plantml-train $(ARGS)

# Tiers (markers in pyproject.toml): test = not slow and not real_data; test-slow = slow and
# not real_data; test-data = real_data; test-all = all of them. pytest exits 5 when a tier
# selects no test: that is not a failure (NONE_OK), any other status is.
PYTEST := $(BIN)/python -m pytest -q
NONE_OK := ; status=$$?; if [ $$status -eq 5 ]; then echo "no tests selected"; status=0; fi; exit $$status

test: $(STAMP)
	$(PYTEST) $(ARGS)

test-slow: $(STAMP)
	$(PYTEST) -m "slow and not real_data" $(ARGS) $(NONE_OK)

test-data: $(STAMP)
	$(PYTEST) -m real_data $(ARGS) $(NONE_OK)

test-all: $(STAMP)
	$(PYTEST) -m "" $(ARGS)

# Jupyter itself is not part of .[dev] (the tests run the notebook with nbclient): it is
# installed into .venv the first time a notebook target runs.
JUPYTER := $(VENV)/.jupyter
$(JUPYTER): $(STAMP)
	$(BIN)/python -m pip install --quiet notebook==7.6.5 nbconvert==7.17.2
	touch $(JUPYTER)

notebook: $(JUPYTER)
	$(BIN)/jupyter notebook notebooks/quickstart.ipynb

notebook-run: $(JUPYTER)
	mkdir -p outputs
	$(BIN)/jupyter nbconvert --to html --execute notebooks/quickstart.ipynb --output-dir outputs --output quickstart

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

format: $(STAMP)
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
