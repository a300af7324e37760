# Two commands do all the set-up on a fresh machine:
#   make train   the main job: 2 DeepSpeed ranks train the default experiment, evaluate, checkpoint, export
#   make test    the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install; a CUDA user may pick another (see README).
TORCH ?= torch==2.14.1 torchvision==0.29.1
NUM_RANKS ?= 2
PYTEST_ARGS ?=

.PHONY: setup system-deps train test lint

$(BIN)/.dsdet-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

system-deps:
	scripts/install-system-deps.sh

setup: system-deps $(BIN)/.dsdet-installed

train: setup
	$(BIN)/deepspeed --num_gpus $(NUM_RANKS) --module dsdet.train $(ARGS)
	@echo "What to expect: the default experiment (no ARGS) ends at about AP 0.31 and AP50 0.61 on the val split"
	@echo "after its 12 epochs, in about 8 minutes on 2 CPU cores. For more: train longer (ARGS=train.epochs=24),"
	@echo "use more ranks (NUM_RANKS=4) or a GPU; docs/quickstart.md explains the run, docs/datasets.md your own data."

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check dsdet tests benchmarks
