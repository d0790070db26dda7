# Portrait4D-v2 pipeline. `make pipeline` runs the whole DAG on the tiny preset; `make test` runs the tests.
# Both set up .venv first (idempotent: a second `make setup` takes seconds).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

PRESET ?= tiny
SET ?=
VIDEOS ?=
PYTEST_ARGS ?=

export P4D_HOME ?= $(CURDIR)/artifacts
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_API_URL ?=
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1
PREFECT_PORT ?= 4200
SERVER_URL := http://127.0.0.1:$(PREFECT_PORT)/api
WORK_POOL ?= portrait4d-local

.PHONY: setup lock pipeline test test-all inspect bench contact-sheet param-counts server deploy run stop clean help

help:
	@echo "make pipeline [PRESET=tiny] [SET='psi3d.steps=50 ...'] [VIDEOS='path/*.mp4']   whole DAG"
	@echo "make test | test-all | inspect | bench | contact-sheet | param-counts"
	@echo "make server | deploy | run | stop      local Prefect server, deployments, a worker"
	@echo "make clean                             remove artifacts and Prefect state (not .venv)"

setup: $(STAMP)

$(STAMP): requirements/base.in requirements/constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c requirements/constraints.txt -r requirements/base.in
	@# mediapipe 0.10.21 is the build that ships its models offline; it declares numpy<2, which
	@# zarr 3 cannot use, so it is installed without its declared dependencies (they are in base.in).
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -c requirements/constraints.txt mediapipe==0.10.21
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

lock: setup
	@{ echo "# Exact versions of the whole environment (pip freeze of a working install, Python 3.11)."; \
	   echo "# Used by 'make setup' as pip constraints. Regenerate with 'make lock'."; \
	   $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//' ; } > requirements/constraints.txt

pipeline: setup
	$(PY) -m flows.pipeline --preset $(PRESET) $(if $(SET),--set "$(SET)") $(if $(VIDEOS),--videos "$(VIDEOS)")

test: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

inspect: setup
	$(PY) -m storage_schemas.inspect $(ARGS)

bench: setup
	$(PY) bench/run.py $(ARGS)

param-counts: setup
	$(PY) -m models.param_counts

contact-sheet: setup
	$(PY) -m pipeline_tasks.genhead_previews --out outputs/previews

clean:
	rm -rf artifacts .prefect outputs
