# Two commands a newcomer needs: `make serve` and `make test`. Both create and reuse .venv/.

# The first Python 3.11-3.13 on PATH (TensorFlow has no wheels for newer ones).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3 python; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' 2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data/Multi_Label_dataset

.PHONY: serve test lint format train train-seed card bench mutation clean-venv docker-check replicas-check compose-up compose-down

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11, 3.12 or 3.13 is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps: reinstall only when pyproject.toml changes, so a second run is instant.
# The service with LiteRT only (no TensorFlow): what `make serve` needs for the shipped versions.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[litert]"
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

## Run the service with the shipped model on http://localhost:8000
serve: $(VENV)/.runtime
	$(BIN)/python -m app

## Run the whole test suite (lint included)
test: $(VENV)/.dev
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Retrain the shipped architecture / the tutorial baseline on the shared dataset
train: $(VENV)/.dev
	$(BIN)/python -m training train --csv $(DATA)/train.csv --images $(DATA)/Images

train-seed: $(VENV)/.dev
	$(BIN)/python -m training train --arch seed --store runs/store --csv $(DATA)/train.csv --images $(DATA)/Images

## Regenerate docs/model-card.md from the newest model version's metadata
card: $(VENV)/.dev
	$(BIN)/python -m training card --model-dir $$(ls -d model_store/poster-genres/*/ | tail -n 1) --out docs/model-card.md

## Mutation testing of the pure-Python core (not part of CI: see tests/MUTATION.md)
mutation: $(VENV)/.dev
	$(BIN)/pip install --quiet "mutmut>=3.3,<4"
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

## Build the image and check it serves like the venv (installs/starts Docker if needed; deploy/)
docker-check: $(VENV)/.dev
	deploy/docker-check.sh

## 3 replicas behind nginx under load: stop, kill, roll to the other model version (deploy/)
replicas-check: $(VENV)/.dev
	deploy/replicas-check.sh

## docker-compose.yml built and started in the background, healthy (installs Docker and compose,
## and a stand-in base image offline, when needed; deploy/compose-up.sh); then stopped
compose-up:
	deploy/compose-up.sh

compose-down:
	$$(python3 deploy/compose.py) down

clean-venv:
	rm -rf $(VENV)
