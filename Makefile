# Two commands set everything up on a fresh Debian/Ubuntu machine:
#   make repro   create .venv, install pinned deps and the default dataset, run `dvc repro`
#   make test    the same set-up, then the whole test suite
# Both are idempotent: the venv is rebuilt only when a requirements file changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATASET_MARKER := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup repro test test-avx2 bench sweep study study-small-batch-long-tail dataset mlflow-ui clean-venv

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

dataset:
	@bash scripts/apt_install.sh dataset-fashion-mnist $(DATASET_MARKER) "set data.root to a folder with the Fashion-MNIST IDX files, or data.download: true"

# For the test that opens MLflow's runs page in a headless browser (it skips without one).
browser:
	@bash scripts/apt_install.sh chromium chromium "the headless-browser test of the MLflow UI will skip"

setup: $(STAMP) dataset

# DVC stages call `python`: put the venv first on PATH so they use its interpreter.
repro: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

test: setup browser
	$(BIN)/python -m pytest -q --durations=30

# The numerics- and kernel-sensitive tests again on oneDNN's and ATen's AVX2 kernels, whatever
# this CPU has: an AVX-512 machine otherwise never runs the code paths of an AVX2-only one.
# `timeout`: a broken kernel can hang instead of crash.
AVX2_TESTS := tests/test_encoder_gradients.py tests/test_models.py tests/test_engine.py tests/test_learning.py tests/test_multiprocess.py tests/test_stages.py
# Left out there: stage tests that run no kernel the others do not (signals, notebook, DVC's
# bookkeeping, bad-input lines, the MLflow UI), and every test of servers, clusters and README
# commands (not in AVX2_TESTS): they check orchestration, which the kernels do not change.
AVX2_SKIP := not (ctrl_c or notebook or code_change or missing_released or adding_a_fraction or fraction_too_small or mlflow_ui_opens or runs_page_renders)
# On a CPU with nothing above AVX2 for oneDNN or ATen (no avx512f, avx_vnni or amx_tile), their
# default kernels are the AVX2 ones: `make test` already ran this path, and the rerun would only
# repeat it (about 9 minutes on 2 cores). FORCE_AVX2_RERUN=1 runs it anyway.
ABOVE_AVX2 := $(shell grep -qwE 'avx512f|avx_vnni|amx_tile' /proc/cpuinfo 2>/dev/null && echo yes)
test-avx2: setup
	@if [ -z "$(ABOVE_AVX2)$(FORCE_AVX2_RERUN)" ]; then \
		echo "test-avx2: skipped, this CPU has no kernel path above AVX2 (no avx512f, avx_vnni or amx_tile in /proc/cpuinfo), so make test ran the AVX2 kernels already; FORCE_AVX2_RERUN=1 reruns them"; \
	else \
		ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 timeout 1800 $(BIN)/python -m pytest -q --durations=15 $(AVX2_TESTS) -k "$(AVX2_SKIP)"; \
	fi

bench: setup
	$(BIN)/python -m bench

# A hyperparameter sweep (README "Sweeps"): make sweep SPACE=optimizer ARGS="--method ce"
SPACE ?= temperature
sweep: setup
	$(BIN)/python -m pipeline.sweep --space $(SPACE) $(ARGS)

# The committed study (reports/study/, README "The study"): three seeds of the whole comparison, the
# temperature sweep and its confirmation, from a fresh clone of HEAD. About 90 minutes on 2 cores.
STUDY ?= configs/study_fashion_mnist.yaml
study: setup
	$(BIN)/python -m pipeline.study $(STUDY)

# The second study (reports/study_small_batch_long_tail/, README "The second study"): three seeds of
# the main comparison, the small-batch cells (batch 32, with and without a momentum-key queue) and
# the long-tail cells, from a fresh clone of HEAD; no sweep. 17 minutes on a 2-core Xeon.
SMALL_BATCH_LONG_TAIL_STAGES := linear_eval train_ce long_tail small_batch
study-small-batch-long-tail: setup
	$(BIN)/python -m pipeline.study configs/study_small_batch_long_tail.yaml --only $(SMALL_BATCH_LONG_TAIL_STAGES) --out reports/study_small_batch_long_tail

# Prints the address of the experiment's runs page, then serves MLflow's UI on 127.0.0.1:5000
# (another port: make mlflow-ui MLFLOW_UI_PORT=5001).
MLFLOW_UI_PORT ?= 5000
mlflow-ui: setup
	$(BIN)/python -m stages.mlflow_ui --port $(MLFLOW_UI_PORT)

clean-venv:
	rm -rf $(VENV)
