# Tasks Service: developer and CI entry points. `make` (or `make help`) lists the targets.
# Needs only what a fresh machine has: GNU make, bash, python3 (+ venv/pip), rustup/cargo.
# Everything else (moto, cargo-lambda + zig, SAM CLI, awscli, linters) lands in .venv from
# infra/requirements.txt.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
VENV_BIN := $(VENV)/bin
PYTHON ?= python3
REQUIREMENTS := infra/requirements.txt
LOCAL_REQUIREMENTS := infra/requirements-local.txt
# A stamp names its requirements' hash: editing them reinstalls.
files_hash = $(shell $(PYTHON) -c 'import hashlib,sys; print(hashlib.sha256(b"".join(open(f,"rb").read() for f in sys.argv[1:])).hexdigest()[:16])' $(1))
REQ_HASH := $(call files_hash,$(REQUIREMENTS) $(LOCAL_REQUIREMENTS))
VENV_STAMP := $(VENV)/.installed-$(REQ_HASH)
LOCAL_VENV_STAMP := $(VENV)/.installed-local-$(call files_hash,$(LOCAL_REQUIREMENTS))
# The venv's tools (sam, cfn-lint, statelint, cargo-lambda, zig, moto_server, aws) come first.
WITH_VENV := PATH="$(VENV_BIN):$$PATH"

TEMPLATE := infra/template.yaml
SAMCONFIG := $(ROOT)/infra/samconfig.toml
STATE_MACHINE := state-machine/tasks.asl.json
SAM_BUILD_DIR := .aws-sam/build
EMULATOR_VENV := $(ROOT)/.venv-emulator
EMULATOR_REQUIREMENTS := infra/emulator-requirements.txt
EMULATOR_REQ_HASH := $(shell $(PYTHON) -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest()[:16])' $(EMULATOR_REQUIREMENTS))
EMULATOR_VENV_STAMP := $(EMULATOR_VENV)/.installed-$(EMULATOR_REQ_HASH)
LAMBDA_BINS := api cron process-sqs-records execute-task update-status
# Their packages (the cron binary is the tasks-cron package's).
LAMBDA_PACKAGES := api tasks-cron process-sqs-records execute-task update-status
LAMBDA_DIR := target/lambda-arm64
ARM64_TARGET := aarch64-unknown-linux-gnu

export SAM_CLI_TELEMETRY := 0
# sam validate / cfn-lint need a region; nothing here talks to AWS.
LINT_REGION := us-east-1

PORT ?= 3000
API_URL ?= http://127.0.0.1:$(PORT)
E2E_ARGS ?=
BENCH_ARGS ?=
# make sim SEED=<n> replays one seed and prints its trace digest; SIM_ARGS adds the flags that
# crates/tasks-sim/src/bin/tasks-sim.rs lists.
SEED ?=
SIM_ARGS ?=
BENCH_LAMBDA_WARM ?= 300
# Requests per case under callgrind (make profile-lambda).
PROFILE_LAMBDA_REQUESTS ?= 50
CARGO_TEST ?= cargo test --workspace

.PHONY: help venv local-venv browser valgrind rust-tools rust-arm64 fmt lint clippy module-layers check-infra test unit-test e2e-ci dev \
	sim sim-long sim-scale bench bench-lambda profile-lambda run-e2e-test build sam-build deploy-local destroy-local deploy-dev destroy-dev deploy-prod destroy-prod clean-venv \
	emulator-venv emulator emulator-stop e2e-deployed redrive

help: ## List the targets
	@echo "Tasks Service — make targets:"
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  %-14s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: PORT=$(PORT) API_URL=$(API_URL) E2E_ARGS='$(E2E_ARGS)' BENCH_ARGS='$(BENCH_ARGS)'"
	@echo "           AWS_PROFILE or other AWS CLI credentials and PARAMS (deploy-*), CRON_INTERVAL_SECONDS (e2e-ci, default 5)"

# ---------------------------------------------------------------- toolchains

venv: $(VENV_STAMP) ## Python tools into .venv (moto, cargo-lambda, SAM CLI, awscli, cfn-lint, statelint)

$(VENV_STAMP): $(REQUIREMENTS) $(LOCAL_REQUIREMENTS)
	@echo "==> .venv: installing $(REQUIREMENTS)"
	@start=$$(date +%s); \
	test -x $(VENV_BIN)/python || $(PYTHON) -m venv $(VENV); \
	rm -f $(VENV)/.installed-*; \
	$(VENV_BIN)/python -m pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS); \
	touch $@; \
	echo "==> .venv ready in $$(( $$(date +%s) - start ))s"

# `make dev` needs moto alone: a first run installs only that (the full set, when installed,
# includes it).
local-venv: ## moto alone into .venv (what make dev needs), unless `make venv` installed everything
	@if [[ -f $(VENV_STAMP) || -f $(LOCAL_VENV_STAMP) ]]; then :; else \
		echo "==> .venv: installing $(LOCAL_REQUIREMENTS)"; \
		start=$$(date +%s); \
		test -x $(VENV_BIN)/python || $(PYTHON) -m venv $(VENV); \
		rm -f $(VENV)/.installed-local-*; \
		$(VENV_BIN)/python -m pip install --quiet --disable-pip-version-check -r $(LOCAL_REQUIREMENTS); \
		touch $(LOCAL_VENV_STAMP); \
		echo "==> .venv (local mode) ready in $$(( $$(date +%s) - start ))s"; \
	fi

clean-venv: ## Remove .venv (next `make venv` reinstalls)
	rm -rf $(VENV)

# The console's browser test drives headless Chromium through chromedriver. CHROMIUM and
# CHROMEDRIVER name other binaries (e.g. Google Chrome and its driver); otherwise Debian's packages.
# Where neither they nor apt-get are there (macOS, Fedora), `make test` runs everything else and
# says loudly that the browser test did not run; under CI (CI set) the browser test is required.
HAVE_BROWSER := { [[ -n "$${CHROMIUM:-}" ]] || command -v chromium >/dev/null; } && \
	{ [[ -n "$${CHROMEDRIVER:-}" ]] || command -v chromedriver >/dev/null; }
BROWSER_SKIPPED := printf '\n!!! The console browser test was SKIPPED: no Chromium and chromedriver here.\n!!! Install them (or set CHROMIUM and CHROMEDRIVER to their paths) to run it; CI requires it.\n\n' >&2

browser: ## Chromium + chromedriver for the console test (apt-get install chromium chromium-driver, only if missing)
	@if $(HAVE_BROWSER); then :; \
	elif command -v apt-get >/dev/null; then \
		echo "==> installing chromium and chromium-driver (apt-get)"; \
		sudo=; [[ $$(id -u) -eq 0 ]] || sudo=sudo; \
		$$sudo apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver; \
	elif [[ -n "$${CI:-}" ]]; then \
		echo "error: CI requires the console browser test: install Chromium and chromedriver, or set CHROMIUM and CHROMEDRIVER" >&2; \
		exit 1; \
	else $(BROWSER_SKIPPED); fi

valgrind: ## valgrind for make profile-lambda (apt-get install valgrind, only if missing)
	@if command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then :; else \
		echo "==> installing valgrind (apt-get)"; \
		sudo=; [[ $$(id -u) -eq 0 ]] || sudo=sudo; \
		$$sudo apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq valgrind; \
	fi

rust-tools: ## rustfmt + clippy components (added only if missing)
	@if command -v rustup >/dev/null; then \
		for c in rustfmt clippy; do \
			rustup component list --installed | grep -q "^$$c" || rustup component add $$c; \
		done; \
	fi

rust-arm64: ## The aarch64-unknown-linux-gnu std for Lambda cross builds (added only if missing)
	@if command -v rustup >/dev/null; then \
		rustup target list --installed | grep -qx '$(ARM64_TARGET)' || rustup target add $(ARM64_TARGET); \
	fi

# ---------------------------------------------------------------- quality

fmt: rust-tools ## cargo fmt
	cargo fmt --all

lint: clippy module-layers check-infra ## cargo fmt --check + clippy -D warnings + tasks-core's layers + infra linters

module-layers: rust-tools ## tasks-core's modules import only their layer and those before it, in no cycle
	cargo test -q -p tasks-core --test module_layers

clippy: rust-tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

check-infra: venv ## sam validate --lint, cfn-lint, statelint (all offline)
	@start=$$(date +%s); export AWS_DEFAULT_REGION=$(LINT_REGION) $(WITH_VENV); \
	echo "==> sam validate --lint $(TEMPLATE)"; \
	sam validate --lint --template-file $(TEMPLATE) --config-file $(SAMCONFIG) --config-env dev; \
	echo "==> cfn-lint $(TEMPLATE)"; \
	cfn-lint $(TEMPLATE); \
	echo "==> statelint $(STATE_MACHINE)"; \
	infra/scripts/lint-asl.sh $(STATE_MACHINE) $(TEMPLATE); \
	echo "==> check-infra OK in $$(( $$(date +%s) - start ))s"

test: venv lint unit-test sim e2e-ci ## Everything CI runs: venv, lint, check-infra, cargo test, sim, e2e-ci

unit-test: venv browser ## cargo test --workspace (CARGO_TEST overrides, e.g. 'cargo nextest run --workspace')
	@if $(HAVE_BROWSER); then $(WITH_VENV) $(CARGO_TEST); else \
		$(WITH_VENV) TASKS_SKIP_BROWSER_TEST=1 $(CARGO_TEST) && status=0 || status=$$?; \
		$(BROWSER_SKIPPED); exit $$status; \
	fi

sim: ## Simulate 200 seeds x 300 tasks over an hour with AWS's faults (SEED=<n>: one seed, its digest)
	cargo run --quiet -p tasks-sim --bin tasks-sim -- $(if $(SEED),--seed $(SEED),--seeds 200) $(SIM_ARGS)

sim-long: ## Simulate 1,000,000 tasks over a day with faults on (release build; not in CI)
	cargo run --release --quiet -p tasks-sim --bin tasks-sim -- --seed $(or $(SEED),1) --tasks 1000000 --hours 24 --threads 1 $(SIM_ARGS)

sim-scale: ## Three workloads at scale against AWS's default quotas: a steady million a day, 100,000 due in one second, 5,000 creates a second for a minute (release build; about 5 min)
	cargo run --release --quiet -p tasks-sim --bin tasks-sim -- --scale --seed $(or $(SEED),1) $(SIM_ARGS)

e2e-ci: venv ## Short e2e against tasks-local on a free port (E2E_ARGS, CRON_INTERVAL_SECONDS)
	$(WITH_VENV) infra/scripts/e2e-ci.sh

# ---------------------------------------------------------------- local runs

dev: local-venv ## Run the whole service locally (tasks-local + its moto) on 127.0.0.1:PORT (3000)
	cargo build -p tasks-local --bin tasks-local
	@# exec: Ctrl-C and SIGTERM reach tasks-local itself, which stops the emulator it started.
	exec env PORT=$(PORT) $(WITH_VENV) "$$(cargo metadata --no-deps --format-version 1 | \
		$(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/tasks-local"

bench: venv ## cargo run --release -p tasks-local --bin tasks-bench -- BENCH_ARGS
	exec env $(WITH_VENV) cargo run --release -p tasks-local --bin tasks-bench -- $(BENCH_ARGS)

bench-lambda: venv ## Each release Lambda binary as a Lambda process on moto: cold start, latency, CPU, RSS
	cargo build --release $(addprefix -p ,$(LAMBDA_PACKAGES)) -p lambda-harness --bins
	@target="$$(cargo metadata --no-deps --format-version 1 | \
		$(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release"; \
	$(WITH_VENV) "$$target/bench-lambda" "$$target" $(BENCH_LAMBDA_WARM)

profile-lambda: venv valgrind ## callgrind counts per request of the api's POSTs and the cron's dispatch (installs valgrind if missing)
	cargo build --profile profiling -p api -p tasks-cron
	cargo build --release -p lambda-harness --bin profile-lambda
	@target="$$(cargo metadata --no-deps --format-version 1 | \
		$(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"; \
	$(WITH_VENV) "$$target/release/profile-lambda" "$$target/profiling" "$$target/callgrind" $(PROFILE_LAMBDA_REQUESTS)

run-e2e-test: ## e2e client against API_URL (default http://127.0.0.1:3000); E2E_ARGS passed on
	exec env API_URL=$(API_URL) cargo run -p e2e --bin e2e -- $(E2E_ARGS)

# ---------------------------------------------------------------- Lambda artifacts

build: venv rust-arm64 ## Release arm64 Lambda zips in target/lambda-arm64/<bin>/bootstrap.zip, checked
	@start=$$(date +%s); export $(WITH_VENV); set -x; \
	cargo lambda build --release --arm64 --output-format zip \
		--lambda-dir $(LAMBDA_DIR) $(addprefix --bin ,$(LAMBDA_BINS)); \
	{ set +x; } 2>/dev/null; \
	echo "==> cargo lambda build took $$(( $$(date +%s) - start ))s; checking the zips:"; \
	infra/scripts/check-lambda-zips.sh $(LAMBDA_DIR) $(LAMBDA_BINS)

sam-build: venv rust-arm64 ## sam build (rust-cargolambda builder) into .aws-sam/build
	$(WITH_VENV) sam build --template-file $(TEMPLATE) --build-dir $(SAM_BUILD_DIR) \
		--config-file $(SAMCONFIG) --config-env dev

# ---------------------------------------------------------------- deploy

emulator-venv: $(EMULATOR_VENV_STAMP) ## MiniStack (the free AWS emulator deploy-local uses) into .venv-emulator

$(EMULATOR_VENV_STAMP): $(EMULATOR_REQUIREMENTS)
	@echo "==> .venv-emulator: installing $(EMULATOR_REQUIREMENTS)"
	@test -x $(EMULATOR_VENV)/bin/python || $(PYTHON) -m venv $(EMULATOR_VENV)
	@rm -f $(EMULATOR_VENV)/.installed-*
	@$(EMULATOR_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(EMULATOR_REQUIREMENTS)
	@touch $@

emulator: emulator-venv ## Start MiniStack on 127.0.0.1:4566 in the background (no Docker, no account)
	infra/scripts/emulator.sh start

emulator-stop: ## Stop the MiniStack that `make emulator` (or deploy-local) started
	infra/scripts/emulator.sh stop

deploy-local: venv emulator-venv ## Build this machine's binaries + deploy to the emulator (started if needed), print the API URL
	$(WITH_VENV) infra/scripts/stack.sh deploy local

destroy-local: venv ## Delete the emulator's stack
	$(WITH_VENV) SAM_DELETE_ARGS=--no-prompts infra/scripts/stack.sh destroy local

e2e-deployed: venv emulator-venv ## Deploy to a fresh emulator, run the e2e suite against the deployed API, destroy (CI)
	$(WITH_VENV) infra/scripts/e2e-deployed.sh

deploy-dev: venv rust-arm64 ## Build + deploy the dev stack to AWS (any AWS CLI credentials; PARAMS="Key=Value ..."), print outputs
	$(WITH_VENV) infra/scripts/stack.sh deploy dev

destroy-dev: venv ## Delete the dev stack (asks for confirmation)
	$(WITH_VENV) infra/scripts/stack.sh destroy dev

deploy-prod: venv rust-arm64 ## Build + deploy the prod stack (API key required; changeset confirmed; PARAMS="Key=Value ...")
	$(WITH_VENV) infra/scripts/stack.sh deploy prod

destroy-prod: venv ## Delete the prod stack (asks for confirmation)
	$(WITH_VENV) infra/scripts/stack.sh destroy prod

# The stage `make redrive` acts on (local, dev or prod).
STAGE ?= dev

redrive: venv ## Move the STAGE's (dev) dead-letter queue back to the dispatch queue and wait (docs/deploy.md#runbook)
	$(WITH_VENV) infra/scripts/redrive.sh $(STAGE)
