# Two entry points for the README Quickstart. Each creates .venv (Python >= 3.10) on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
OUT    ?= rd_interp_demo

.PHONY: demo test test-all bench gpu-wheels venv clean

$(BIN)/rd-interp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/rd-interp

## Run the main job on the shipped offline data and model family.
demo: venv
	$(BIN)/rd-interp demo --out $(OUT)

## Install test dependencies and run the default (fast) test selection.
test: venv
	$(BIN)/python -m pytest -m "not slow" -q

## Everything, including slow tests.
test-all: venv
	$(BIN)/python -m pytest -q -m "slow or not slow"

## Benchmarks against the peers (each provisions its peer in .bench/ on first use); writes
## analyses/results/<date>.json + .md and regenerates the README's benchmark section.
## BENCH_ARGS="--only embed,sae" or "--big" for a subset or larger runs.
bench: venv
	$(BIN)/python analyses/run_bench.py $(BENCH_ARGS)

## Wheels that the lent GPU machine lacks (it has Python 3.12 with torch, numba, scipy and transformers, and no
## network) for analyses/gpu_check.py: fair-esm, into .whl/ (README, "GPU check").
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 -d .whl fair-esm==2.0.0

clean:
	rm -rf $(VENV) $(OUT)
