# kubedag developer entry points. `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where the testbed keeps a control plane started by `make cluster-up`.
TESTBED_STATE ?= .testbed

.PHONY: host-packages bench-real help venv images cluster-bin cluster-up cluster-down test test-unit test-integration lint typecheck crds dashboards demo bench bench-argo all clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP) ## Create .venv with kubedag and its test/dev tools

cluster-bin: ## Build the pinned control-plane binaries into ~/.cache/kubedag (minutes cold, instant warm)
	hack/build-cluster-bin.sh

host-packages: ## Install the Debian packages the real node and the image build need, if missing
	hack/ensure-host-packages.sh

images: venv host-packages ## Build the worker, operator and test-bed images with buildah (~/.cache/kubedag/images; warm: seconds)
	$(PY) -m kubedag.testbed.images ensure

cluster-up: venv cluster-bin ## Start a local control plane in the background (kubeconfig in .testbed/)
	$(BIN)/kubedag-testbed up --state-dir $(TESTBED_STATE)

cluster-down: venv ## Stop the control plane started by cluster-up
	$(BIN)/kubedag-testbed down --state-dir $(TESTBED_STATE)

test-unit: venv ## Unit tests (no API server)
	$(BIN)/pytest tests/unit

test-integration: venv cluster-bin host-packages images ## Integration tests on a fresh local control plane (or KUBEDAG_KUBECONFIG)
	$(BIN)/pytest tests/integration

test: venv cluster-bin host-packages images ## The whole suite: lint, types, unit and integration tests
	$(MAKE) --no-print-directory lint typecheck
	$(BIN)/pytest tests

demo: venv cluster-bin ## The document pipeline end to end: real containers on a real node where possible (Linux, root), else kwok
	$(PY) hack/demo.py

crds: venv ## Regenerate crds/ (and the chart's copy) from the pydantic models
	$(PY) -m kubedag.api.crd --out crds
	$(PY) -m kubedag.api.crd --out charts/kubedag/crds

dashboards: venv ## Regenerate the Grafana dashboards shipped in the chart
	$(PY) -m kubedag.dashboards --out charts/kubedag/dashboards

bench: venv cluster-bin ## Benchmarks against a bare-script floor (table + bench/results/<time>.json); ARGS='--only many' for 1,000 runs
	$(PY) -m bench $(ARGS)

# Not part of `make test`: builds Argo Workflows' controller once (about 5 min cold, cached in
# ~/.cache/kubedag), then runs every scenario on five systems. ARGS picks, e.g.
# ARGS='--scenarios chain,lattice --skip-default' for a quick run; --cap SECONDS per system.
bench-argo: venv cluster-bin ## kubedag side by side with Argo Workflows and both floors (one table + bench/results/argo-<time>.json)
	hack/build-cluster-bin.sh argo-workflows
	$(PY) -m bench.argo $(ARGS)

bench-real: venv cluster-bin host-packages images ## The chain scenario on real containers on the test bed's real node
	$(PY) -m bench --real-node


lint: venv ## ruff
	$(BIN)/ruff check operator tests bench

typecheck: venv ## mypy (strict)
	$(BIN)/mypy

all: lint typecheck test ## Everything

clean: ## Remove the virtualenv and local state (not the binary cache)
	rm -rf $(VENV) $(TESTBED_STATE) .pytest_cache .mypy_cache .ruff_cache
