# Shoal: the README's two commands are `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE ?= $(HOME)/.cache/shoal
TESTBED_KUBECONFIG := $(CACHE)/testbed/kubeconfig
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv deps testbed-build cluster-up cluster-down cluster-status crds check-crds lint \
        unit e2e test test-chaos run bench kind-up kind-down clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

venv: $(BIN)/.installed ## Python virtual environment with the operator and dev tools

deps: ## System packages the test bed needs (Debian: prometheus, openssl)
	bash testbed/install-deps.sh

testbed-build: ## Build the test bed's binaries from pinned Go modules (cached in ~/.cache/shoal)
	bash testbed/build.sh

cluster-up: testbed-build ## Start the local test bed (etcd, apiserver, KWOK, metrics-server, Prometheus)
	$(PY) testbed/cluster.py up

cluster-down: ## Stop the local test bed
	$(PY) testbed/cluster.py down

cluster-status: ## Show the test bed's components
	$(PY) testbed/cluster.py status

crds: venv ## Generate crds/*.yaml (and the Helm chart's copy) from the pydantic models
	$(BIN)/python -m shoal.crdgen --out crds --chart helm/shoal/crds

check-crds: venv
	$(BIN)/python -m shoal.crdgen --check --out crds --chart helm/shoal/crds

lint: venv ## ruff and mypy
	$(BIN)/ruff check operator tests testbed bench
	$(BIN)/ruff format --check operator tests testbed bench
	$(BIN)/mypy

unit: venv ## Unit tests (no cluster)
	$(BIN)/pytest tests/unit -q

e2e: venv cluster-up ## End-to-end tests against the test bed
	KUBECONFIG=$(TESTBED_KUBECONFIG) $(BIN)/pytest tests/e2e -q -m 'not chaos'

test: lint unit e2e ## Everything CI runs: lint, unit tests, then end-to-end tests on the test bed

test-chaos: venv cluster-up ## Long fault-injection variants
	KUBECONFIG=$(TESTBED_KUBECONFIG) $(BIN)/pytest tests/e2e -q -m chaos

run: venv ## Run the operator: against $$KUBECONFIG if reachable, else the local test bed
	@if kubectl version --request-timeout=3s >/dev/null 2>&1; then \
	  echo "using the cluster of your current kubeconfig"; kc="$${KUBECONFIG:-}"; \
	else \
	  echo "no reachable cluster configured: starting the local test bed"; \
	  $(MAKE) --no-print-directory cluster-up; kc=$(TESTBED_KUBECONFIG); \
	fi; \
	KUBECONFIG=$${kc:-$$HOME/.kube/config} kubectl apply --server-side -f crds/ && \
	KUBECONFIG=$${kc:-$$HOME/.kube/config} $(BIN)/python -m shoal

bench: venv cluster-up ## Benchmarks (not tests): writes bench/results/
	KUBECONFIG=$(TESTBED_KUBECONFIG) $(BIN)/python -m bench

kind-up: ## For users with Docker: a kind cluster with metrics-server and Prometheus
	bash testbed/kind-up.sh

kind-down:
	kind delete cluster --name shoal

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
