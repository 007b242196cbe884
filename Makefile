# `make help` lists the targets. Every target that runs Python depends on `install`,
# which builds .venv once (a stamp file makes later calls free).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# NO_INSTALL=1 PY=python3: use an environment that already holds mbt's dependencies (the
# GPU image; scripts/device_sweep.sh) instead of building .venv.
STAMP := $(if $(filter 1,$(NO_INSTALL)),,$(VENV)/.install.stamp)
# The torch/torchvision pair we test with; `make install TORCH_SPEC=` keeps whatever
# torch the environment already has (e.g. a CUDA image).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PROTOCOL ?= full
LAUNCHER ?= basic

# Where CIFAR lives (default: data/, or $$MBT_DATA_ROOT). Without it, PROTOCOL=smoke|cpu
# use the real partial copy in ../shared/data/cifar-head; smoke then falls back to
# generated data, cpu (real images only) stops with the download hint.
HEAD := ../shared/data/cifar-head
DATA_ROOT ?= $(if $(wildcard $(or $(MBT_DATA_ROOT),data)/cifar-10-batches-py),,$(if $(filter smoke cpu,$(PROTOCOL)),$(wildcard $(HEAD)),))
# The ledger the sweeps append to and the reports read (results/ledger.jsonl holds the
# records behind the committed results).
LEDGER ?= runs/ledger.jsonl
# PIPELINE=dataloader|device: CIFAR's input pipeline (default: device on CUDA). A GPU run
# with PIPELINE=dataloader has the run key of the same cell on a CPU, so it fills that cell.
PIPELINE ?=
SWEEP = protocol=$(PROTOCOL) hydra/launcher=$(LAUNCHER) paths.ledger=$(LEDGER) $(if $(DATA_ROOT),data.root=$(DATA_ROOT)) $(if $(PIPELINE),data.pipeline=$(PIPELINE)) $(ARGS)
TRAIN := $(PY) -m mbt.train
# LAUNCHER=status (conf/hydra/launcher/status.yaml) only lists what each sweep would run.
REPORT_FROM = $(if $(filter status,$(LAUNCHER)),@true,$(PY) -m mbt.report --ledger $(1))
REPORT = $(call REPORT_FROM,$(LEDGER))
# The analytic toy runs are not ledger cells: LAUNCHER=status names them and runs nothing.
TOY = $(if $(filter status,$(LAUNCHER)),@echo "status: a toy run (not a ledger cell) not run:",$(PY))
# The extra seeds at each best start lr: one multirun per (optimizer, lr) cell read from
# stdin, its overrides appended to the command, CELL_JOBS at a time (launchers that spread
# jobs: side by side); a failed one does not stop the others, the line fails at the end.
CELL_JOBS ?= $(if $(filter local_gpus slurm,$(LAUNCHER)),8,1)
EACH_CELL = xargs -r -L 1 -P $(CELL_JOBS)
# The paper's 9 start lrs (Tables 1-2).
LR_GRID := 100,10,1,0.1,0.01,0.001,0.0001,0.00001,0.000001

.PHONY: help install test test-integration test-slow test-slurm lint demo reproduce-toy reproduce-fig2a clean \
	reproduce-table1 reproduce-table2 reproduce-table3 reproduce-fig2 reproduce-fig2b reproduce-fig3 \
	reproduce-autolr reproduce-ood reproduce-mbt-gap levelling-ood reproduce-all report bench gpu-check data-ood \
	device-prepare device-sweep

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{printf "  \033[1m%-20s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install mbt with its dev tools (idempotent)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(strip $(TORCH_SPEC)),$(PY) -m pip install --quiet $(TORCH_SPEC))
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

test: install ## the fast suite: in-process tests on tiny models (no GPU, no download; README: measured time)
	$(PY) -m pytest

test-integration: install ## entrypoints in fresh processes as a user runs them, and the full-size paper models
	$(PY) -m pytest -m 'integration and not slow and not gpu and not slurm'

test-slow: install ## everything but the GPU and SLURM tests, slow real-data runs included (needs ../shared/data/cifar-head)
	$(PY) -m pytest -m 'not gpu and not slurm'

test-slurm: install ## SLURM tests through hydra/launcher=slurm (brings up a one-node cluster if none answers)
	@state=$$(mktemp -d "$${TMPDIR:-/tmp}/mbt-slurm.XXXXXX"); \
	trap 'rc=$$?; scripts/slurm_cluster.sh stop "$$state"; [ $$rc = 0 ] && rm -rf "$$state" \
	  || echo "test-slurm: logs and tmp dirs kept in $$state" >&2' EXIT; \
	env=$$(scripts/slurm_cluster.sh start "$$state") && eval "$$env" && \
	$(PY) -m pytest -m slurm --basetemp="$$state/pytest" tests/test_slurm.py

# Beyond the paper (issue 25): Fashion-MNIST and the fortunes text corpus from Debian packages
# (no download at run time). Installs with apt-get only what is missing (sudo -n when not root).
OOD_PACKAGES := dataset-fashion-mnist:/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
	fortunes:/usr/share/games/fortunes/fortunes
data-ood: ## install Debian's dataset-fashion-mnist and fortunes where missing (data=fashion_mnist, data=fortunes)
	@missing=(); for p in $(OOD_PACKAGES); do [ -e "$${p#*:}" ] || missing+=("$${p%%:*}"); done; \
	if [ $${#missing[@]} = 0 ]; then echo "data-ood: installed (dataset-fashion-mnist, fortunes)"; exit 0; fi; \
	command -v apt-get >/dev/null || { echo "error: no apt-get here: install $${missing[*]} (Debian/Ubuntu packages) another way" >&2; exit 3; }; \
	sudo=(); [ "$$(id -u)" = 0 ] || sudo=(sudo -n); \
	echo "data-ood: installing $${missing[*]} with apt-get"; \
	"$${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  "$${sudo[@]}" apt-get install -y -qq "$${missing[@]}" \
	  || { echo "error: apt-get install $${missing[*]} failed (root or passwordless sudo needed)" >&2; exit 3; }

lint: install ## ruff on the code, tests, scripts and examples; mypy on the typed library (mbt.optim)
	$(VENV)/bin/ruff check src tests scripts examples setup.py
	$(VENV)/bin/mypy src/mbt/optim

demo: install ## toy experiments -> results/demo/, then a small ResNet18 + MBT-NAG run on CPU (13 min measured on 2 busy cores)
	$(PY) scripts/reproduce_toy.py --out results/demo --quick
	PY=$(PY) scripts/demo.sh

reproduce-toy: install ## Examples 3.6-3.7 and Fig. 2(a) at the paper's settings -> results/
	$(TOY) scripts/reproduce_toy.py --out results

reproduce-fig2a: install ## Fig. 2(a) only -> results/fig2a.{png,csv,md}
	$(TOY) scripts/reproduce_toy.py --out results --only fig2a

reproduce-table1: install ## Table 1: MBT-GD lr, 9 start lrs x 7 batch sizes (PROTOCOL=full|quick|smoke, LAUNCHER=basic|local_gpus|slurm|status)
	$(PY) -m mbt.find_lr --multirun experiment=table1 $(SWEEP)
	$(REPORT) table1 --protocol $(PROTOCOL)

# Under cpu, the seeds at each best start lr come before MBT at the other start lrs: the
# claim "MBT beats the best tuned baseline" rests on them (mean +- std over 3 seeds).
reproduce-table2: install ## Table 2: 8 optimizers x 9 lrs + MBT-GD/MMT/NAG, ResNet18, CIFAR10
	$(TRAIN) --multirun experiment=table2 $(SWEEP)
	$(TRAIN) --multirun experiment=table2_mbt $(SWEEP)
ifeq ($(PROTOCOL),cpu)
	rc=0; ( set -o pipefail; $(PY) -m mbt.report.best_lr --ledger $(LEDGER) --protocol cpu | \
	  $(EACH_CELL) $(TRAIN) --multirun experiment=table2 seed=1,2 $(SWEEP) ) || rc=1; \
	$(TRAIN) --multirun experiment=table2_mbt optim=mbt_mmt,mbt_nag optim.lr=$(LR_GRID) seed=0 $(SWEEP) || rc=1; \
	exit $$rc
endif
	$(REPORT) table2 --protocol $(PROTOCOL)

reproduce-table3: install ## Table 3: 5 models x CIFAR10/100 x MBT-MMT/NAG
	$(TRAIN) --multirun experiment=table3 $(SWEEP)
	$(REPORT) table3 --protocol $(PROTOCOL)

# Every condition at seeds 0-2; Table 2's own cells among them (MBT with the buffers cleared,
# NAG at 1e-2) are skipped where Table 2's sweep made them. Defined for cpu only: its NAG
# control's constant lr (0.016) is what MBT-NAG found in Table 2's cpu cells.
reproduce-mbt-gap: install ## beyond the paper: Table 2's MBT cells with momentum kept across searches, and NAG at MBT's lr (PROTOCOL=cpu)
	@$(if $(filter cpu,$(PROTOCOL)),true,echo "error: reproduce-mbt-gap is defined for PROTOCOL=cpu only" >&2; exit 2)
	rc=0; $(TRAIN) --multirun experiment=mbt_gap optim=mbt_mmt,mbt_nag optim.builder.reset_momentum=true,false seed=0,1,2 $(SWEEP) || rc=1; \
	$(TRAIN) --multirun experiment=mbt_gap optim=nag optim.lr=0.01,0.016 seed=0,1,2 $(SWEEP) || rc=1; exit $$rc
	$(REPORT) mbt_gap --protocol $(PROTOCOL)

reproduce-fig2: reproduce-fig2a reproduce-fig2b ## Figure 2: (a) the toy run and (b) below

reproduce-fig2b: install ## Figure 2(b): two-way lr per iterate, full batch, ResNet18 on 500 images
	$(TRAIN) --multirun experiment=fig2b $(SWEEP)
	$(REPORT) fig2b --protocol $(PROTOCOL)

reproduce-fig3: install ## Figure 3: per-epoch lr of MBT-MMT/NAG, ResNet18, CIFAR10/100
	$(TRAIN) --multirun experiment=fig3 $(SWEEP)
	$(REPORT) fig3 --protocol $(PROTOCOL)

reproduce-autolr: install ## beyond the paper: automatic-lr methods vs tuned grids, cost counted (PROTOCOL also cpu)
	$(TRAIN) --multirun experiment=autolr $(SWEEP)
	$(TRAIN) --multirun experiment=autolr_grid $(SWEEP)
	$(REPORT) autolr --protocol $(PROTOCOL)

# Issue 25's three tasks. Fashion-MNIST and the text corpus come from Debian packages (make
# data-ood) at their default roots, so these sweeps do not take DATA_ROOT. Tuned grids run at
# seed 0; seeds 1-2 then run at each grid's best lr (mbt.report.best_lr). Under cpu, CIFAR's
# tuned SGD/NAG and MBT cells are Table 2's (same run keys); under full, autolr's presets
# keep their own divergence cut-off, so those are cells of their own (200 epochs on a GPU).
# One shell for all sweeps: a failed cell stops none of the later sweeps; the target then
# fails before the report, like the other targets.
OODSWEEP = protocol=$(PROTOCOL) hydra/launcher=$(LAUNCHER) paths.ledger=$(LEDGER) $(ARGS)
reproduce-ood: install ## beyond the paper: MBT-GD/MMT/NAG and 8 other automatic-lr methods vs tuned SGD/NAG/AdamW on Fashion-MNIST, a char LM and CIFAR-10 (PROTOCOL=cpu)
	rc=0; for e in out_of_domain out_of_domain_grid out_of_domain_text out_of_domain_text_grid; do \
	  $(TRAIN) --multirun experiment=$$e $(OODSWEEP) || rc=1; done; \
	$(TRAIN) --multirun experiment=autolr $(SWEEP) || rc=1; \
	$(TRAIN) --multirun experiment=autolr_grid $(SWEEP) || rc=1; \
	( set -o pipefail; $(PY) -m mbt.report.best_lr --ledger $(LEDGER) --protocol $(PROTOCOL) --target out_of_domain | \
	  $(EACH_CELL) $(TRAIN) --multirun seed=1,2 $(OODSWEEP) ) || rc=1; \
	( set -o pipefail; $(PY) -m mbt.report.best_lr --ledger $(LEDGER) --protocol $(PROTOCOL) | { grep -E '^optim=(sgd|nag) ' || true; } | \
	  $(EACH_CELL) $(TRAIN) --multirun experiment=autolr_grid seed=1,2 $(SWEEP) ) || rc=1; \
	exit $$rc
	$(REPORT) out_of_domain --protocol $(PROTOCOL)

# How the cpu presets' epoch counts were chosen, seed 0, into their own ledger (the presets'
# comments quote the numbers): Fashion-MNIST, tuned NAG and MBT-NAG for 30 epochs; text,
# AdamW for 24 epochs of the first sizes (context 128, 32-step epochs), then at 3e-3 for 30
# epochs of the sizes kept (context 64, 128-step epochs). The cpu presets override the last
# two's sizes, so these commands pass them explicitly.
levelling-ood: install ## issue 25's epoch check (protocol cpu) -> results/levelling.jsonl
	$(TRAIN) --multirun experiment=out_of_domain_grid optim=nag optim.lr=0.1 trainer.epochs=30 seed=0 protocol=cpu paths.ledger=results/levelling.jsonl $(ARGS)
	$(TRAIN) --multirun experiment=out_of_domain optim=mbt_nag trainer.epochs=30 seed=0 protocol=cpu paths.ledger=results/levelling.jsonl $(ARGS)
	$(TRAIN) --multirun experiment=out_of_domain_text_grid optim=adamw optim.lr=0.001 data.block_size=128 data.subset=1024 trainer.epochs=24 seed=0 protocol=cpu paths.ledger=results/levelling.jsonl $(ARGS)
	$(TRAIN) --multirun experiment=out_of_domain_text_grid optim=adamw optim.lr=0.003 data.block_size=64 data.subset=4096 trainer.epochs=30 trainer.eval_every=3 seed=0 protocol=cpu paths.ledger=results/levelling.jsonl $(ARGS)

reproduce-all: reproduce-toy reproduce-table1 reproduce-table2 reproduce-table3 reproduce-fig2 reproduce-fig3 ## every target above

# Without LEDGER= and before any sweep of yours has written runs/ledger.jsonl, `make report`
# rebuilds results/ from the committed records (and so leaves them unchanged).
REPORT_LEDGER = $(if $(and $(filter file,$(origin LEDGER)),$(if $(wildcard $(LEDGER)),,no)),results/ledger.jsonl,$(LEDGER))
report: install ## rebuild every table and figure from the ledger (never trains; default: runs/ledger.jsonl, else the committed results/ledger.jsonl)
	@$(if $(filter-out $(LEDGER),$(REPORT_LEDGER)),echo "report: no $(LEDGER) yet: reading the committed $(REPORT_LEDGER)")
	$(call REPORT_FROM,$(REPORT_LEDGER)) all

bench: install ## speed: reference vs fast pipeline, MBT-NAG vs NAG -> results/bench.{md,json}
	$(PY) -m mbt.bench $(ARGS)

device-prepare: install ## here, before a GPU call: wheels, data links and the commit in .device/ (scripts/device_prepare.sh)
	PY=$(PY) scripts/device_prepare.sh

device-sweep: ## on the device tool's GPU: the cpu-protocol sweeps of Tables 2-3, Fig. 2(b)/3 and issue 25, many cells per GPU (scripts/device_sweep.sh --help)
	scripts/device_sweep.sh

gpu-check: install ## on one GPU (~8 min): environment, ResNet18+MBT-NAG bf16/compile, MBT search CPU vs GPU, the bench's GPU half -> results/gpu_check.{md,json}
	$(PY) scripts/gpu_check.py $(ARGS)

clean: ## remove caches and Hydra outputs (keeps .venv and results/)
	rm -rf .pytest_cache .ruff_cache outputs multirun results/demo
