# gtseg: every entry point installs what it needs first (idempotent, stamp files), then runs.
# Nothing here needs AWS credentials, Docker or a network beyond PyPI/npm (and only in setup).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
# Lambda target platform. infra/settings.py reads these two lines (the single source of truth), so
# the wheelhouse and the stack cannot drift. 3.14: the newest python runtime aws-cdk-lib 2.275 offers,
# and numpy 2.5.5 / pillow 13.0.0 / pydantic-core 2.50.5 publish cp314 aarch64 wheels for it.
LAMBDA_PYTHON_VERSION ?= 3.14
export LAMBDA_PYTHON_VERSION
LAMBDA_PLATFORMS := --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64
WHEELHOUSE  := build/wheelhouse
DEMO_JOB    := demo-output/gtseg-demo

export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Fake, process-scoped credentials for targets that run boto3 against moto. Never for cdk (P10).
FAKE_AWS := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
            AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

.PHONY: help setup demo check test test-fast bench synth lint clean distclean

help:
	@echo "make demo   - install, then run a local labeling job end to end (no AWS account)"
	@echo "make test   - install, then lint, check formatting, layers and types, and run every test"
	@echo "make check  - only the static gates of make test (ruff, ruff format, import-linter, mypy)"
	@echo "make bench  - consolidation benchmark: 3 worker error models, references, speed, memory (BENCH_ARGS=--quick)"
	@echo "make synth  - cdk synth (real CDK CLI, cdk-nag on, offline, Docker-free bundling)"
	@echo "make lint   - ruff + cfn-lint on the synthesized template"
	@echo "make setup  - only install (.venv, node_modules, Lambda wheelhouse)"

setup: $(VENV)/.installed node_modules/.installed $(WHEELHOUSE)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U 'pip>=25'
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# The browser tests (Playwright from requirements.txt) drive Debian's chromium, never a browser
# Playwright downloads: installed here where apt-get can; otherwise this says what to install, and
# those tests skip saying the same.
setup: $(VENV)/.chromium
$(VENV)/.chromium: | $(VENV)/.installed
	@if command -v chromium >/dev/null 2>&1; then touch $@; \
	elif { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
	  && command -v chromium >/dev/null 2>&1; then touch $@; \
	else echo "install Debian's chromium package for the browser tests (apt-get install -y chromium); they skip without it"; fi

# arm64 wheels for the Lambda layer, fetched once so synth and tests never reach the network.
# The report layer (lambdas/requirements-report.txt: python-liquid for the finalize function) too.
$(WHEELHOUSE)/.installed: lambdas/requirements.txt lambdas/requirements-report.txt Makefile $(VENV)/.installed
	mkdir -p $(WHEELHOUSE)
	$(PIP) download -q -d $(WHEELHOUSE) --only-binary=:all: --implementation cp \
	  --python-version $(LAMBDA_PYTHON_VERSION) $(LAMBDA_PLATFORMS) -r lambdas/requirements.txt \
	  -r lambdas/requirements-report.txt
	touch $@

demo: setup
	$(FAKE_AWS) $(PY) -m gtseg.cli simulate --force  # the demo replaces its own earlier run
	@# then the job finalized as the deployed stack does when a job ends (docs/finalize.md)
	$(FAKE_AWS) $(PY) -m gtseg.cli finalize $(DEMO_JOB)/manifests/output/output.manifest \
	  --out $(DEMO_JOB)/gtseg --force --quiet \
	  --map s3://gtseg-demo-output/jobs/gtseg-demo=$(DEMO_JOB) \
	  --map s3://gtseg-demo-data=$(DEMO_JOB)/local-emulator/data-bucket

# Static gates first (seconds), then the tests: lint, formatting, the layer contracts, types.
check: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

test: check
	$(FAKE_AWS) $(PY) -m pytest

test-fast: setup
	$(FAKE_AWS) $(PY) -m pytest -m "not slow" -x -q

# Bench-only dependencies (scikit-image, SimpleITK, crowd-kit): pinned in bench/requirements.txt,
# installed into the same venv by this target only (make test never needs them).
$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(PIP) install -q -r bench/requirements.txt
	touch $@

bench: setup $(VENV)/.bench-installed
	$(FAKE_AWS) $(PY) bench/bench_consolidation.py $(BENCH_ARGS)

# cdk-nag (AwsSolutions) runs inside every synth and fails it on an unacknowledged finding.
# Credentials are removed for cdk: with any set, the CLI calls STS to find the account (toolchain P10).
synth: setup
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE npx cdk synth -q

# cfn-lint reads .cfnlintrc.yaml (cdk.out/*.template.json, W3005 ignored); any error fails.
lint: setup synth
	$(PY) -m ruff check .
	$(VENV)/bin/cfn-lint

clean:
	rm -rf cdk.out .pytest_cache .ruff_cache demo-output
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -not -path './node_modules/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules build
