# llamacpp-aks: one entry point for people and CI. `make help` lists every target (its `##` text).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
# STACK names the stack in every target; CONFIG (its file, Pulumi.<stack>.yaml) is accepted too, and
# each follows from the other. One on the command line wins over the other from the environment;
# both given and naming different stacks is refused.
ifdef CONFIG
  CONFIG_STACK := $(patsubst Pulumi.%.yaml,%,$(notdir $(CONFIG)))
  ifeq ($(CONFIG_STACK),$(notdir $(CONFIG)))
    $(error CONFIG=$(CONFIG) is not a stack file; name it Pulumi.<stack>.yaml, or give STACK=<stack> instead)
  endif
  ifeq ($(origin STACK),undefined)
    STACK := $(CONFIG_STACK)
  else ifeq ($(origin STACK)/$(origin CONFIG),environment/command line)
    STACK := $(CONFIG_STACK)
  else ifeq ($(origin STACK)/$(origin CONFIG),command line/environment)
    CONFIG := Pulumi.$(STACK).yaml
  else ifneq ($(STACK),$(CONFIG_STACK))
    $(error STACK=$(STACK) and CONFIG=$(CONFIG) name different stacks; give STACK=<stack> alone (its file is Pulumi.<stack>.yaml))
  endif
endif
STACK ?= dev
CONFIG ?= Pulumi.$(STACK).yaml
OUT ?= render/$(STACK)
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

.PHONY: help venv lock preflight up preview destroy render model diff prices bootstrap verify loadtest loadtest-image loadtest-job test lint typecheck bench cuda-check clean doctor runner-image logs outputs port-forward rotate-key llamacpp-upgrade

help: ## list every target
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 24

# Venvs install the hashed lock files only: pip refuses any file whose sha256 is not listed.
$(VENV)/.installed: requirements-dev.lock.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.lock.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-checkov.lock.txt
	touch $@

venv: $(VENV)/.installed $(CHECKOV_VENV)/.installed ## create .venv and .venv-checkov from the hashed lock files

# Run it where pip sees only the public index: a local wheel folder in pip's config would lock in
# hashes of files no other machine has.
lock: $(VENV)/.installed ## after editing a requirements*.txt: pin every dependency with its hashes
	for base in requirements requirements-dev requirements-checkov requirements-aiperf; do \
	  $(PY) -m piptools compile --quiet --generate-hashes --allow-unsafe --no-strip-extras \
	    --no-emit-index-url --no-emit-trusted-host --no-emit-find-links --no-emit-options \
	    --output-file "$$base.lock.txt" "$$base.txt"; \
	done

preflight: $(VENV)/.installed ## check the subscription and this machine before up (az: providers, quota, zones, tools)
	$(PY) -m tools.preflight --stack "$(STACK)"

# One run names every missing tool and the passphrase (it encrypts a stack's secrets), before any venv.
up: ## preflight, then pulumi up of STACK (default dev), local file backend
	@tools/cloud-tools.sh up az pulumi kubelogin passphrase
	@$(MAKE) --no-print-directory preflight
	pulumi login "$(PULUMI_BACKEND_URL)"
	pulumi stack select --create "$(STACK)"
	pulumi up --stack "$(STACK)" --diff

preview: ## pulumi preview --diff of STACK (selects the stack, or creates it), local file backend
	@tools/cloud-tools.sh preview az pulumi kubelogin passphrase
	@$(MAKE) --no-print-directory $(VENV)/.installed
	pulumi login "$(PULUMI_BACKEND_URL)"
	pulumi stack select --create "$(STACK)"
	pulumi preview --stack "$(STACK)" --diff

destroy: ## pulumi destroy of STACK, then what stays (state, bootstrap, soft-deleted items, local files), its cost and how to remove it
	@tools/cloud-tools.sh destroy az pulumi kubelogin passphrase
	@$(MAKE) --no-print-directory $(VENV)/.installed
	pulumi login "$(PULUMI_BACKEND_URL)"
	pulumi destroy --stack "$(STACK)"
	@$(PY) -m tools.destroy --stack "$(STACK)"

render: $(VENV)/.installed ## offline render of STACK (default dev) to OUT (default render/STACK), under mocks
	$(PY) -m tools.render --config "$(CONFIG)" --out "$(OUT)"

model: $(VENV)/.installed ## print the model block for REPO, FILE and MMPROJ (REVISION, default main) to paste into a stack
	@test -n "$(REPO)" -a -n "$(FILE)" -a -n "$(MMPROJ)" || { echo "make model needs REPO, FILE and MMPROJ (e.g. REPO=owner/name FILE=model.gguf MMPROJ=mmproj.gguf)"; exit 1; }
	$(PY) -m tools.model_block --repo "$(REPO)" --file "$(FILE)" --mmproj "$(MMPROJ)" --revision "$(or $(REVISION),main)"

diff: $(VENV)/.installed ## sizing and cost of STACK at BASE (a git ref) against the working tree
	@test -n "$(BASE)" || { echo "make diff needs BASE, a git ref to compare against (e.g. BASE=origin/main)"; exit 1; }
	$(PY) -m tools.diff --base "$(BASE)" --stack "$(STACK)"

prices: $(VENV)/.installed ## refresh core/prices.json from the Azure Retail Prices API [REGIONS=eastus,westeurope]
	$(PY) -m tools.prices $(if $(REGIONS),--regions "$(REGIONS)")

verify: $(VENV)/.installed ## compare the live server at URL (API_KEY_FILE) with STACK: slots, context, alias, projector, an image chat
	@test -n "$(URL)" -a -n "$(API_KEY_FILE)" || { echo "make verify needs URL=<base url> API_KEY_FILE=<file> [STACK=<name>]"; exit 1; }
	$(PY) -m tools.verify --url "$(URL)" --api-key-file "$(API_KEY_FILE)" --config "$(CONFIG)"

DURATION ?= 60
loadtest: $(VENV)/.installed ## load URL with budget-sized image chats (AIPerf, its own venv): TTFT, ITL, tokens/s, errors, deferrals [DURATION=s] [CONCURRENCY=n]
	@test -n "$(URL)" -a -n "$(API_KEY_FILE)" || { echo "make loadtest needs URL=<base url> API_KEY_FILE=<file> [STACK=<name>] [DURATION=s] [CONCURRENCY=n]"; exit 1; }
	$(PY) -m tools.loadtest --url "$(URL)" --api-key-file "$(API_KEY_FILE)" --config "$(CONFIG)" --duration "$(DURATION)" $(if $(CONCURRENCY),--concurrency "$(CONCURRENCY)") $(if $(TOKENIZER),--tokenizer "$(TOKENIZER)")

loadtest-image: $(VENV)/.installed ## build image/loadtest (AIPerf, tokenizer) with STACK's builder into its registry; print its digest
	@tools/cloud-tools.sh loadtest-image pulumi az
	$(PY) -m tools.loadtest_image --config "$(CONFIG)" --registry "$$(pulumi stack output registryLoginServer --stack $(STACK))"

loadtest-job: $(VENV)/.installed ## print the ConfigMap, NetworkPolicy and Job that run make loadtest in the cluster, LOADTEST_IMAGE by digest (pipe to kubectl apply -f -)
	@test -n "$(LOADTEST_IMAGE)" || { echo "make loadtest-job needs LOADTEST_IMAGE=<ref@sha256:...>, which make loadtest-image prints"; exit 1; }
	@$(PY) -m tools.loadtest_job --config "$(CONFIG)" --image "$(LOADTEST_IMAGE)" --duration "$(DURATION)" $(if $(CONCURRENCY),--concurrency "$(CONCURRENCY)")

# --- day two: the live stack (read with its kubeconfig; make outputs fetches it) ---
# Only KUBECONFIG= on the command line replaces the stack's own: one exported in the shell for
# another cluster must not send these targets there.
KUBE_ARG = $(if $(filter command line,$(origin KUBECONFIG)),--kubeconfig "$(KUBECONFIG)")

doctor: $(VENV)/.installed ## read-only check of STACK's live deployment: one sentence per problem, with its fix [KUBECONFIG=file]
	$(PY) -m tools.doctor --stack "$(STACK)" $(KUBE_ARG)

TAIL ?= 100
logs: $(VENV)/.installed ## STACK's server logs, with the download Job's and init containers' when they failed [CONTAINER=name] [TAIL=n|-1] [FOLLOW=1]
	@$(PY) -m tools.logs --stack "$(STACK)" $(KUBE_ARG) --tail "$(TAIL)" $(if $(CONTAINER),--container "$(CONTAINER)") $(if $(filter 1 yes true,$(FOLLOW)),--follow)

outputs: $(VENV)/.installed ## STACK's endpoint, kubeconfig and API key into .stacks/STACK/ (from its state, or Azure for a CI stack) and the access they need [FROM=state|azure]
	@tools/cloud-tools.sh outputs az
	@$(PY) -m tools.outputs --stack "$(STACK)" $(if $(FROM),--from "$(FROM)")

PORT ?= 8008
port-forward: $(VENV)/.installed ## forward 127.0.0.1:PORT (default 8008) to STACK's server (kubectl from .tools/bin, the kubeconfig make outputs wrote)
	@tools/cloud-tools.sh port-forward kubectl kubelogin
	@$(PY) -m tools.outputs --stack "$(STACK)" --port-forward "$(PORT)"

rotate-key: ## replace STACK's generated API key (pulumi up --replace, its URN read from the program); says what clients and pods see while it rolls [DRY_RUN=1]
	@tools/cloud-tools.sh rotate-key az pulumi kubelogin passphrase
	@$(MAKE) --no-print-directory $(VENV)/.installed
	pulumi login "$(PULUMI_BACKEND_URL)"
	$(PY) -m tools.rotate_key --stack "$(STACK)" $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)

llamacpp-upgrade: $(VENV)/.installed ## move STACK to llama.cpp RELEASE=bNNNN: source digest from the index, stack values, CPU build, --help diff [INDEX_URL=] [NO_BUILD=1]
	@test -n "$(RELEASE)" || { echo "make llamacpp-upgrade needs RELEASE=<a llama.cpp release, e.g. b11500> [STACK=<name>]"; exit 1; }
	$(PY) -m tools.llamacpp_upgrade --stack "$(STACK)" --release "$(RELEASE)" $(if $(INDEX_URL),--index-url "$(INDEX_URL)") $(if $(filter 1 yes true,$(NO_BUILD)),--no-build)

BOOTSTRAP_STACK ?= ci
bootstrap: ## one-time CI setup (bootstrap/): identities, roles, state storage, GitHub settings
	@tools/cloud-tools.sh bootstrap pulumi
	@test -n "$${GITHUB_TOKEN:-}" || { echo "set GITHUB_TOKEN: a token that administers the repository (environments, variables, secrets)"; exit 1; }
	@test -n "$${PULUMI_CONFIG_PASSPHRASE:-}$${PULUMI_CONFIG_PASSPHRASE_FILE:-}" || { echo "set PULUMI_CONFIG_PASSPHRASE (it encrypts the bootstrap stack's secrets)"; exit 1; }
	@$(MAKE) --no-print-directory $(VENV)/.installed
	$(PY) -m bootstrap.register --config "bootstrap/Pulumi.$(BOOTSTRAP_STACK).yaml"
	cd bootstrap && pulumi login "$(PULUMI_BACKEND_URL)" && pulumi stack select --create "$(BOOTSTRAP_STACK)" && pulumi up --stack "$(BOOTSTRAP_STACK)" --diff

runner-image: $(VENV)/.installed ## build image/runner (prod's runner) into bootstrap's registry with ACR Tasks; print the prodRunner.image to set
	@tools/cloud-tools.sh runner-image pulumi az passphrase
	$(PY) -m bootstrap.runner_image --stack "$(BOOTSTRAP_STACK)" --registry "$$(cd bootstrap && pulumi login "$(PULUMI_BACKEND_URL)" >&2 && pulumi stack output prodRunnerRegistry --stack "$(BOOTSTRAP_STACK)")"

lint: $(VENV)/.installed ## ruff format --check and ruff check
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed ## mypy over the program, components, specs, core and tools
	$(VENV)/bin/mypy

# System tools first: a missing compiler stops the run in seconds, before any venv is built. The two
# venvs are made side by side (-j2): pip unpacks and byte-compiles on one core.
test: ## every test and offline check (what .ci/run runs)
	@PYTHON=$(PYTHON) tools/system-tools.sh
	@$(MAKE) --no-print-directory -j2 $(VENV)/.installed $(CHECKOV_VENV)/.installed
	$(PY) -m tools.timed

bench: $(VENV)/.installed ## time the render of each stack and the unit tests
	$(PY) -m tools.bench

cuda-check: $(VENV)/.installed ## compile and link the CUDA llama-server with the machine's nvcc
	$(PY) -m tools.llama_build cuda

clean: ## remove renders and caches of the checkers
	rm -rf render .pytest_cache .ruff_cache .mypy_cache
