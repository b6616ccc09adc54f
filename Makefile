# Two commands set everything up on a fresh Debian/Ubuntu machine:
#   make repro   create .venv, install pinned deps and the default dataset, run `dvc repro`
#   make test    the same set-up, then the whole test suite
# Both are idempotent: the venv is rebuilt only when a requirements file changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATASET_MARKER := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup repro test bench dataset mlflow-ui clean-venv

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

dataset:
	@bash scripts/install_dataset.sh

setup: $(STAMP) dataset

# DVC stages call `python`: put the venv first on PATH so they use its interpreter.
repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m bench

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db

clean-venv:
	rm -rf $(VENV)
