# Portrait4D-v2 pipeline. `make pipeline` runs the whole DAG on the tiny preset; `make test` runs the tests.
# Both set up .venv first (idempotent: a second `make setup` takes seconds).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

# User values reach the recipes as environment variables, expanded by the shell inside quotes ("$$VIDEOS"),
# never pasted into the recipe text: a quote, `;` or `$` in a path or override stays part of the value.
# Argument lists (ARGS, PYTEST_ARGS, RUN_ARGS) are split like shell words by Python's shlex, never evaluated:
# `$(WITH_ARGS) NAME cmd ...` runs cmd ... followed by the words of $$NAME.
WITH_ARGS = $(PY) -c 'import os, shlex, sys; os.execvp(sys.argv[2], sys.argv[2:] + shlex.split(os.environ.get(sys.argv[1], "")))'
# `$(WITH_SET) cmd ...` runs cmd ... followed by `--set WORD` for each word of $$SET: the flows' grammar (flows/cli.py),
# one override per --set; SET='a.b=1 c.d="x y"' → --set a.b=1 --set 'c.d=x y'.
WITH_SET = $(PY) -c 'import os, shlex, sys; os.execvp(sys.argv[1], sys.argv[1:] + [a for w in shlex.split(os.environ.get("SET", "")) for a in ("--set", w)])'
export PRESET ?= tiny
export SET ?=
export VIDEOS ?=
export PYTEST_ARGS ?=
export ARGS ?=
export SEEDS ?= 3
export RUN_ARGS ?=
export PSI3D ?=
export ANALYSER ?=

export P4D_HOME ?= $(CURDIR)/artifacts
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1
PREFECT_PORT ?= 4200
SERVER_URL := http://127.0.0.1:$(PREFECT_PORT)/api
WORK_POOL ?= portrait4d-local

.PHONY: clean-stale setup lock lint pipeline ablation test test-all inspect bench bench-gpu learn-bench learn-bench-motion learn-ablation contact-sheet param-counts server deploy run stop clean help

help:
	@echo "make pipeline [PRESET=tiny] [SET='psi3d.steps=50 ...'] [VIDEOS='path/*.mp4']   whole DAG"
	@echo "make ablation [PRESET=tiny] [SEEDS=3] [SET=...]   the v2 ablation: pseudo multi-view vs monocular-only Ψ, per yaw bin"
	@echo "make test | test-all | lint | inspect | bench | bench-gpu | learn-bench | learn-bench-motion | learn-ablation | contact-sheet | param-counts"
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
	$(WITH_SET) $(PY) -m flows.pipeline --preset "$$PRESET" $${VIDEOS:+--videos "$$VIDEOS"}

# The v2 ablation (stage 4 again with monocular frames only; SEEDS training seeds per variant, all evaluated, with
# bootstrap intervals over seeds and identities); reuses the pipeline's artifacts.
ablation: setup
	$(WITH_SET) $(PY) -m flows.ablation --preset "$$PRESET" --seeds "$$SEEDS"

# ruff: lint (pycodestyle, pyflakes, import order) and format, line length 120 (pyproject.toml)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# --durations: the slowest tests, to keep the fast suite within its 10-minute budget on 2 cores
test: lint
	$(WITH_ARGS) PYTEST_ARGS $(PY) -m pytest -q -m "not slow" --durations=15

test-all: lint
	$(WITH_ARGS) PYTEST_ARGS $(PY) -m pytest -q

inspect: setup
	$(WITH_ARGS) ARGS $(PY) -m storage_schemas.inspect

# temporary folders left by killed stages (`make inspect ARGS=--stale` lists them); OLDER_THAN in hours
export OLDER_THAN ?= 0
clean-stale: setup
	$(PY) -m storage_schemas.inspect --remove-stale --older-than "$$OLDER_THAN"

bench: setup
	$(WITH_ARGS) ARGS $(PY) bench/run.py

# What issue 15 asks of a GPU, in one run (prepare it for a lent GPU's short session): FLOPs, utilisation and images/s
# of training steps and of a converted frame at tiny/small/paper (bf16), their profile by phase, renderer and Ψ
# throughput, stage-3 frames/s at every preset. Without a GPU the same cases measure the CPU.
GPU_CASES ?= flops,profile,models.,stage3_conversion
bench-gpu: setup
	$(PY) bench/run.py --only "$(GPU_CASES)"

# Ψ3d learns 3D: stages 1, 2a and 5 on the `learn` preset (≤ 90 min on 2 cores) → bench/learn/learn-<host>-<date>.md
learn-bench: setup
	$(WITH_ARGS) ARGS $(PY) bench/learn_bench.py $${SET:+--set "$$SET"} $${PSI3D:+--psi3d "$$PSI3D"}

# Ψ learns motion: stages 1b, 2b, videos, 3, 4 and 5 for Ψ on the `learn` preset, reusing learn-bench's Ψ3d
# → bench/learn/learn-motion-<host>-<date>.md
learn-bench-motion: setup
	$(WITH_ARGS) ARGS $(PY) bench/learn_motion.py $${SET:+--set "$$SET"} $${PSI3D:+--psi3d "$$PSI3D"} $${ANALYSER:+--analyser-samples "$$ANALYSER"} $${EMOT:+--motion-encoder "$$EMOT"} $${EVAL_ANALYSER:+--eval-analyser "$$EVAL_ANALYSER"}

# The v2 ablation on the learn preset, on learn-bench-motion's upstream (reusing PSI3D / ANALYSER like it)
# → bench/learn/ablation-<host>-<date>.md
learn-ablation: setup
	$(WITH_ARGS) ARGS $(PY) bench/learn_ablation.py --seeds "$$SEEDS" $${SET:+--set "$$SET"} $${PSI3D:+--psi3d "$$PSI3D"} $${ANALYSER:+--analyser-samples "$$ANALYSER"} $${EMOT:+--motion-encoder "$$EMOT"} $${EVAL_ANALYSER:+--eval-analyser "$$EVAL_ANALYSER"}

param-counts: setup
	$(PY) -m models.param_counts

contact-sheet: setup
	$(PY) -m pipeline_tasks.data.previews --out outputs/previews

# ---- Prefect server, deployments, worker (state under .prefect/) -------------------------------
PREFECT := $(VENV)/bin/prefect
WITH_SERVER := PREFECT_API_URL=$(SERVER_URL)

server: setup
	@mkdir -p $(PREFECT_HOME)
	@if curl -sf $(SERVER_URL)/health >/dev/null 2>&1; then echo "Prefect server already up at $(SERVER_URL)"; else \
	  setsid nohup $(PREFECT) server start --host 127.0.0.1 --port $(PREFECT_PORT) > $(PREFECT_HOME)/server.log 2>&1 & \
	  echo $$! > $(PREFECT_HOME)/server.pid; \
	  for i in $$(seq 1 90); do curl -sf $(SERVER_URL)/health >/dev/null 2>&1 && break; sleep 1; done; \
	  curl -sf $(SERVER_URL)/health >/dev/null || { echo "server did not start; see $(PREFECT_HOME)/server.log"; exit 1; }; \
	  echo "Prefect server at $(SERVER_URL) (UI http://127.0.0.1:$(PREFECT_PORT)), log $(PREFECT_HOME)/server.log"; fi

deploy: setup
	@curl -sf $(SERVER_URL)/health >/dev/null || { echo "no Prefect server at $(SERVER_URL): run 'make server' first"; exit 1; }
	@$(WITH_SERVER) $(PREFECT) work-pool inspect $(WORK_POOL) >/dev/null 2>&1 || $(WITH_SERVER) $(PREFECT) work-pool create $(WORK_POOL) --type process
	$(WITH_SERVER) P4D_PROJECT_DIR=$(CURDIR) $(PREFECT) --no-prompt deploy --all
	@if [ -f $(PREFECT_HOME)/worker.pid ] && kill -0 $$(cat $(PREFECT_HOME)/worker.pid) 2>/dev/null; then echo "worker already running"; else \
	  $(WITH_SERVER) setsid nohup $(PREFECT) worker start --pool $(WORK_POOL) > $(PREFECT_HOME)/worker.log 2>&1 & \
	  echo $$! > $(PREFECT_HOME)/worker.pid; echo "worker started (log $(PREFECT_HOME)/worker.log)"; fi

export DEPLOYMENT ?= portrait4d-pipeline/$(PRESET)
run: setup
	$(WITH_SERVER) $(WITH_ARGS) RUN_ARGS $(PREFECT) deployment run "$$DEPLOYMENT" --watch

stop:
	@# the worker first: a worker orphaned by its server ignores SIGTERM
	@for name in worker server; do f=$(PREFECT_HOME)/$$name.pid; if [ -f $$f ]; then pid=$$(cat $$f); \
	  kill -TERM -$$pid 2>/dev/null || kill -TERM $$pid 2>/dev/null; \
	  for i in $$(seq 1 20); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
	  kill -KILL -$$pid 2>/dev/null || true; rm -f $$f; echo "stopped $$name"; fi; done

clean:
	rm -rf artifacts artifacts-oracle-bench .prefect outputs
