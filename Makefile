# llamacpp-aks: one entry point for people and CI.
#   make up STACK=dev      stand the stack up with `pulumi up` (local file backend by default)
#   make test              every test and offline check (what .ci/run runs)
#   make render CONFIG=Pulumi.prod.yaml OUT=render/prod
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
STACK ?= dev
CONFIG ?= Pulumi.dev.yaml
OUT ?= render/$(word 2,$(subst ., ,$(notdir $(CONFIG))))
# The local file backend keeps state in ~/.pulumi; set PULUMI_BACKEND_URL to use a bucket instead.
PULUMI_BACKEND_URL ?= file://~
export PULUMI_BACKEND_URL
CACHE_DIR ?= $(HOME)/.cache/llamacpp-aks
export CACHE_DIR
# Pulumi CLI and kubelogin live in a project-local folder (gitignored), first on PATH.
TOOLS_DIR ?= .tools
export TOOLS_DIR
export PATH := $(abspath $(TOOLS_DIR))/bin:$(PATH)
# The CLI version matches the pinned Pulumi SDK (they are released together).
PULUMI_VERSION := $(patsubst pulumi==%,%,$(filter pulumi==%,$(file < requirements.txt)))
export PULUMI_VERSION

.PHONY: help venv lock up preview destroy render test lint checks bench cuda-check clean

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

# Venvs install the hashed lock files only: pip refuses any file whose sha256 is not listed.
$(VENV)/.installed: requirements-dev.lock.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.lock.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-checkov.lock.txt
	touch $@

# After editing a requirements*.txt: pin every dependency with its hashes (Python 3.11, needs the index).
# Run it where pip sees only the public index: a local wheel folder in pip's config would lock in hashes
# of files no other machine has.
lock: $(VENV)/.installed
	for base in requirements requirements-dev requirements-checkov; do \
	  $(PY) -m piptools compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	    --no-emit-index-url --no-emit-trusted-host --no-emit-find-links --no-emit-options \
	    --output-file "$$base.lock.txt" "$$base.txt"; \
	done

venv: $(VENV)/.installed $(CHECKOV_VENV)/.installed

up:
	@tools/cloud-tools.sh up pulumi kubelogin
	@test -n "$${PULUMI_CONFIG_PASSPHRASE:-}$${PULUMI_CONFIG_PASSPHRASE_FILE:-}" || { echo "set PULUMI_CONFIG_PASSPHRASE (it encrypts this stack's secrets)"; exit 1; }
	@$(MAKE) --no-print-directory $(VENV)/.installed
	pulumi login "$(PULUMI_BACKEND_URL)"
	pulumi stack select --create "$(STACK)"
	pulumi up --stack "$(STACK)" --diff

preview:
	@tools/cloud-tools.sh preview pulumi kubelogin
	@$(MAKE) --no-print-directory $(VENV)/.installed
	pulumi login "$(PULUMI_BACKEND_URL)"
	pulumi preview --stack "$(STACK)" --diff

destroy:
	@tools/cloud-tools.sh destroy pulumi kubelogin
	pulumi login "$(PULUMI_BACKEND_URL)"
	pulumi destroy --stack "$(STACK)"

render: $(VENV)/.installed
	$(PY) -m tools.render --config "$(CONFIG)" --out "$(OUT)"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# System tools first: a missing compiler stops the run in seconds, before any venv is built.
test:
	@PYTHON=$(PYTHON) tools/system-tools.sh
	@$(MAKE) --no-print-directory $(VENV)/.installed $(CHECKOV_VENV)/.installed
	$(PY) -m tools.timed

bench: $(VENV)/.installed
	$(PY) -m tools.bench

cuda-check: $(VENV)/.installed
	$(PY) -m tools.llama_build cuda

clean:
	rm -rf render .pytest_cache .ruff_cache
