# llamacpp-aks: one entry point for people and CI. `make help` lists every target (its `##` text).
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

.PHONY: help venv up preview destroy render diff bootstrap verify loadtest loadtest-job test lint typecheck bench cuda-check clean

help: ## list every target
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 24

$(VENV)/.installed: requirements.txt requirements-dev.txt bootstrap/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

venv: $(VENV)/.installed $(CHECKOV_VENV)/.installed ## create .venv and .venv-checkov from the pinned requirements

up: $(VENV)/.installed ## pulumi up of STACK (default dev), local file backend
	@command -v pulumi >/dev/null || { echo "make up needs the Pulumi CLI (see README, 'Before make up')"; exit 1; }
	@test -n "$${PULUMI_CONFIG_PASSPHRASE:-}$${PULUMI_CONFIG_PASSPHRASE_FILE:-}" || { echo "set PULUMI_CONFIG_PASSPHRASE (it encrypts this stack's secrets)"; exit 1; }
	pulumi login "$(PULUMI_BACKEND_URL)"
	pulumi stack select --create "$(STACK)"
	pulumi up --stack "$(STACK)" --diff

preview: $(VENV)/.installed ## pulumi preview --diff of STACK
	pulumi login "$(PULUMI_BACKEND_URL)"
	pulumi preview --stack "$(STACK)" --diff

destroy: ## pulumi destroy of STACK
	pulumi login "$(PULUMI_BACKEND_URL)"
	pulumi destroy --stack "$(STACK)"

render: $(VENV)/.installed ## offline render of CONFIG (default Pulumi.dev.yaml) to OUT, under mocks
	$(PY) -m tools.render --config "$(CONFIG)" --out "$(OUT)"

diff: $(VENV)/.installed ## sizing and cost of STACK at BASE (a git ref) against the working tree
	@test -n "$(BASE)" || { echo "make diff needs BASE, a git ref to compare against (e.g. BASE=origin/main)"; exit 1; }
	$(PY) -m tools.diff --base "$(BASE)" --stack "$(STACK)"

verify: $(VENV)/.installed ## compare the live server at URL (API_KEY_FILE) with CONFIG: slots, context, alias, projector, an image chat
	@test -n "$(URL)" -a -n "$(API_KEY_FILE)" || { echo "make verify needs URL=<base url> API_KEY_FILE=<file> [CONFIG=Pulumi.<stack>.yaml]"; exit 1; }
	$(PY) -m tools.verify --url "$(URL)" --api-key-file "$(API_KEY_FILE)" --config "$(CONFIG)"

DURATION ?= 60
loadtest: $(VENV)/.installed ## load URL with budget-sized image chats (AIPerf, its own venv): TTFT, ITL, tokens/s, errors, deferrals [DURATION=s] [CONCURRENCY=n]
	@test -n "$(URL)" -a -n "$(API_KEY_FILE)" || { echo "make loadtest needs URL=<base url> API_KEY_FILE=<file> [CONFIG=Pulumi.<stack>.yaml] [DURATION=s] [CONCURRENCY=n]"; exit 1; }
	$(PY) -m tools.loadtest --url "$(URL)" --api-key-file "$(API_KEY_FILE)" --config "$(CONFIG)" --duration "$(DURATION)" $(if $(CONCURRENCY),--concurrency "$(CONCURRENCY)") $(if $(TOKENIZER),--tokenizer "$(TOKENIZER)")

loadtest-job: $(VENV)/.installed ## print the ConfigMap and Job that run make loadtest in the cluster (pipe to kubectl apply -f -)
	@$(PY) -m tools.loadtest_job --config "$(CONFIG)" --duration "$(DURATION)" $(if $(CONCURRENCY),--concurrency "$(CONCURRENCY)")

BOOTSTRAP_STACK ?= ci
bootstrap: $(VENV)/.installed ## one-time CI setup (bootstrap/): identities, roles, state storage, GitHub settings
	@command -v pulumi >/dev/null || { echo "make bootstrap needs the Pulumi CLI (see README, 'Before make up')"; exit 1; }
	@test -n "$${GITHUB_TOKEN:-}" || { echo "set GITHUB_TOKEN: a token that administers the repository (environments, variables, secrets)"; exit 1; }
	@test -n "$${PULUMI_CONFIG_PASSPHRASE:-}$${PULUMI_CONFIG_PASSPHRASE_FILE:-}" || { echo "set PULUMI_CONFIG_PASSPHRASE (it encrypts the bootstrap stack's secrets)"; exit 1; }
	cd bootstrap && pulumi login "$(PULUMI_BACKEND_URL)" && pulumi stack select --create "$(BOOTSTRAP_STACK)" && pulumi up --stack "$(BOOTSTRAP_STACK)" --diff

lint: $(VENV)/.installed ## ruff format --check and ruff check
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed ## mypy over the program, components, specs, core and tools
	$(VENV)/bin/mypy

test: $(VENV)/.installed $(CHECKOV_VENV)/.installed ## every test and offline check (what .ci/run runs)
	$(PY) -m tools.timed

bench: $(VENV)/.installed ## time the render of each stack and the unit tests
	$(PY) -m tools.bench

cuda-check: $(VENV)/.installed ## compile and link the CUDA llama-server with the machine's nvcc
	$(PY) -m tools.llama_build cuda

clean: ## remove renders and caches of the checkers
	rm -rf render .pytest_cache .ruff_cache .mypy_cache
