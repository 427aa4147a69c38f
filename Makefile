# Finetune Studio. Every target that needs the environment depends on `setup`, so
# `make studio` and `make test` work on a fresh clone with nothing but Python installed.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
CLI := $(VENV)/bin/finetune-studio
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
SETUP_STAMP := $(VENV)/.finetune-studio-setup
CONFIG_DIR := examples/configs
PYTEST_ARGS ?=

.PHONY: setup lint format test test-fast prepare-data train-full train-lora train-qlora train-prefix train-ia3 \
        evaluate compare inference serve studio benchmark space notebooks browser-deps clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP): pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode  # compiled once here, not on every cold CLI start
	$(PYTHON) -m core.infrastructure.models.provision
	@touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Debian's Chromium for the Playwright browser tests (no browser download from the web).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed; browser tests will be skipped"; \
	  else echo "apt-get not available; browser tests will be skipped"; fi; }

test: setup browser-deps
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PYTHON) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

prepare-data: setup
	$(CLI) prepare-data --config $(CONFIG_DIR)/smollm2-lora.yaml

train-full: setup
	$(CLI) train --config $(CONFIG_DIR)/smollm2-full.yaml

train-lora: setup
	$(CLI) train --config $(CONFIG_DIR)/smollm2-lora.yaml

train-qlora: setup
	$(CLI) train --config $(CONFIG_DIR)/smollm2-qlora.yaml

train-prefix: setup
	$(CLI) train --config $(CONFIG_DIR)/smollm2-prefix.yaml

train-ia3: setup
	$(CLI) train --config $(CONFIG_DIR)/smollm2-ia3.yaml

evaluate: setup
	$(CLI) evaluate --config $(CONFIG_DIR)/smollm2-lora.yaml --run smollm2-lora

compare: setup
	$(CLI) compare --config $(CONFIG_DIR)/smollm2-lora.yaml --train-all evaluation.max_samples=200

inference: setup
	$(CLI) chat --config $(CONFIG_DIR)/smollm2-lora.yaml --run smollm2-lora

serve: setup
	$(CLI) serve --config $(CONFIG_DIR)/smollm2-lora.yaml

studio: setup
	$(CLI) studio

benchmark: setup
	$(PYTHON) -m benchmarks.run

space: setup
	$(PYTHON) -m studio.space $(SPACE_ARGS)

notebooks: setup
	$(PYTHON) -m pytest tests/test_notebooks.py

clean:
	rm -rf runs registry data/prepared data/cache .pytest_cache .ruff_cache test-artifacts space
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
