# `make help` lists the targets. Every target that runs Python depends on `install`,
# which builds .venv once (a stamp file makes later calls free).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install.stamp
# The torch/torchvision pair we test with; `make install TORCH_SPEC=` keeps whatever
# torch the environment already has (e.g. a CUDA image).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PROTOCOL ?= full
LAUNCHER ?= basic

.PHONY: help install test test-slow lint demo reproduce-toy reproduce-fig2a clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{printf "  \033[1m%-20s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install mbt with its dev tools (idempotent)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(strip $(TORCH_SPEC)),$(PY) -m pip install --quiet $(TORCH_SPEC))
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

test: install ## run the fast test suite (no GPU, no download; a few minutes on 2 cores)
	$(PY) -m pytest

test-slow: install ## also run the slow real-data tests (needs ../shared/data/cifar-head)
	$(PY) -m pytest -m 'not gpu'

lint: install ## ruff lint
	$(VENV)/bin/ruff check src tests scripts

demo: install ## the toy experiments (+ a small training run) into results/demo/, CPU, offline
	$(PY) scripts/reproduce_toy.py --out results/demo --quick

reproduce-toy: install ## Examples 3.6-3.7 and Fig. 2(a) at the paper's settings -> results/
	$(PY) scripts/reproduce_toy.py --out results

reproduce-fig2a: install ## Fig. 2(a) only -> results/fig2a.{png,csv,md}
	$(PY) scripts/reproduce_toy.py --out results --only fig2a

clean: ## remove caches and Hydra outputs (keeps .venv and results/)
	rm -rf .pytest_cache .ruff_cache outputs multirun results/demo
