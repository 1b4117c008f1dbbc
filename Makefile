# Two commands on a fresh clone: `make run` and `make test`. Both set up .venv first, and only
# re-install when requirements.lock or pyproject.toml changed since the last install.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup run test test-all lint lock clean ui serve plots tune stack stack-down

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile \
		-r requirements.lock
	# The project itself, editable: `python bench/….py` and other scripts import its packages.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile --no-deps -e .
	# pip compiles the installed modules one after another; compileall does the same on every
	# core (a fresh setup 3:28 instead of 3:50 on 2 cores). Its status is not the install's:
	# like pip, it fails on modules only a newer Python parses (whenever's _typing_312.py).
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $(STAMP)

run: setup
	python -m flows.pipeline

# A Prefect server on 127.0.0.1:4200 (unless one runs) and the scheduled deployments.
serve: setup
	python -m flows.deploy

# The Optuna search of params.yaml's `tune.<MODEL>`: make tune MODEL=lstm [ARGS="--workers 2 --apply"]
tune: setup
	python -m flows.tune $(MODEL) $(ARGS)

# A worker per core: most of a test's time is a stage process's imports, on one core. On 2 cores
# 7:27 instead of 12:32 one after another (tests/conftest.py keeps a file in one worker).
test: setup
	python -m pytest -n auto --maxprocesses 4 --dist loadfile

test-all: setup  ## the slow, gpu and server tests too
	python -m pytest -m ""

# The MLflow UI over the project's store: experiments per dataset, runs side by side, the registry.
ui: setup
	mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" \
		--host 127.0.0.1 --port 5000

# `dvc plots show` whose page, dvc_plots/index.html, has the Vega libraries inline: DVC's own
# page loads them from a CDN and shows no interactive plot offline.
plots: setup
	python -m stages.plots_page show

lint: setup
	ruff check .
	ruff format --check .

# Regenerates requirements.lock from pyproject.toml. pip-compile pins the CPU wheel this machine
# finds as torch==X+cpu; the local tag is dropped so a CUDA machine installs the CUDA build of
# the same version (pip still prefers the +cpu wheel where one is offered, as here).
lock: setup
	pip-compile --quiet --extra dev --strip-extras --allow-unsafe --no-emit-find-links \
		--no-emit-index-url --output-file requirements.lock pyproject.toml
	sed -i -E 's/^(torch==[0-9.]+)\+cpu/\1/' requirements.lock

clean:
	rm -rf data/raw data/prepared .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

# A team stack on this machine (README "A team stack"): PostgreSQL, an S3 store (moto), an MLflow
# server and a Prefect server with the `training` work pool and a worker, under STACK_DIR (default
# .stack/), on 127.0.0.1 unless STACK_HOST; ports STACK_{POSTGRES,S3,MLFLOW,PREFECT}_PORT.
STACK_STAMP := $(VENV)/.stack-installed

$(STACK_STAMP): stack/requirements.txt $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements.lock -r stack/requirements.txt
	touch $(STACK_STAMP)

stack: $(STACK_STAMP)
	python -m stack up

stack-down: $(STACK_STAMP)
	python -m stack down
