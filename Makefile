# Cryptolytics: the commands a developer needs. Everything runs from a project-local venv
# installed from requirements.lock (exact versions, hashes checked) by uv, so a fresh machine
# needs only Python 3.11 (with its pip, which installs uv itself from requirements-uv.lock).

PYTHON ?= python3
# uv installs every venv here (about 5 s with an empty cache where pip takes minutes)
UV_DIR := .venv-uv
UV := $(UV_DIR)/bin/uv
UV_STAMP := $(UV_DIR)/.installed-$(shell sha1sum requirements-uv.lock | cut -c1-12)
UV_SYNC = $(UV) pip sync --quiet --require-hashes --python
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
# Scanners with dependencies of their own stay out of the app's venv.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed-$(shell sha1sum requirements-tools.lock | cut -c1-12)
# The BigQuery emulator needs duckdb 1.5 (the app uses 2.x): a venv of its own.
EMULATORS := .venv-emulators
EMULATORS_STAMP := $(EMULATORS)/.installed-$(shell sha1sum requirements-emulators.lock | cut -c1-12)

export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: help install emulators up tick app deploy worker blocks test test-fast test-integration test-e2e bench soak audit terraform-check lint format clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV_STAMP): requirements-uv.lock
	rm -rf $(UV_DIR)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
		--target $(UV_DIR) -r requirements-uv.lock
	touch $@

# sync: the venv holds exactly the lock (a removed package goes too), then our code, editable
# (the worker type's entry point), then dbt's parse for the first tick (flows/runtime/dbt_manifest.py)
$(STAMP): requirements.lock pyproject.toml | $(UV_STAMP)
	test -x $(BIN)/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV_SYNC) $(BIN)/python requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	rm -rf cryptolytics.egg-info  # setuptools' build leftover: a stale copy shadows the entry points
	rm -f $(VENV)/.installed-* && touch $@
	@$(BIN)/python -m flows.runtime.dbt_manifest

install: $(STAMP)  ## create .venv with the pinned dependencies (uv; one line when up to date)
	@echo "install: $(VENV) matches requirements.lock"

$(TOOLS_STAMP): requirements-tools.lock | $(UV_STAMP)
	test -x $(TOOLS)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(TOOLS)
	$(UV_SYNC) $(TOOLS)/bin/python requirements-tools.lock
	rm -f $(TOOLS)/.installed-* && touch $@

up: install  ## everything: Prefect UI :4200, pipeline every 5 min, analyst app :8501 (Ctrl-C stops)
	$(BIN)/python -m flows.runtime.stack $(STACK_ARGS)

tick: install  ## one pipeline run now, from the CLI (uses the server of `make up` if it runs)
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} $(BIN)/python -m flows.pipeline

app: install  ## only the analyst app on :8501 (reads what the pipeline published)
	$(BIN)/python -m streamlit run streamlit_app/app.py  # settings: .streamlit/config.toml

deploy: install  ## prefect.yaml's deployments + the warm worker pool on PREFECT_API_URL (default :4200)
	export PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} PWD=$(CURDIR) && \
	$(BIN)/prefect work-pool create cryptolytics --type cryptolytics --overwrite && \
	$(BIN)/prefect --no-prompt deploy --all

worker: install  ## a process worker for the `cryptolytics` pool (runs the deployed flows)
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} \
		$(BIN)/prefect worker start --pool cryptolytics

blocks: install  ## create/update the Prefect blocks and alert automations (server of `make up`)
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} $(BIN)/python -m blocks.register

test: install emulators  ## every tier: unit, integration, end-to-end (CI; 60-90 min on 2 cores)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install  ## the unit tier: no Prefect, dbt or warehouse file (under a minute)
	$(BIN)/python -m pytest --tier unit $(PYTEST_ARGS)

test-integration: install  ## real DuckDB, dbt and a Prefect test server
	$(BIN)/python -m pytest --tier integration $(PYTEST_ARGS)

test-e2e: install emulators  ## browser, emulators, the stack, SIGKILLs (PYTEST_ARGS="--kill-cycles 70" for the deep run)
	$(BIN)/python -m pytest --tier e2e $(PYTEST_ARGS)

bench: install emulators  ## benchmarks (about 35 min): prints a table, writes bench/results/suite.json
	$(BIN)/python -m bench.suite $(BENCH_ARGS)

soak: install  ## 1,000 ticks against a faulty API, with kills and app readers (~1.5 h)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

audit:  ## known vulnerabilities in requirements.lock (pip-audit: needs PyPI's JSON API)
	test -x .venv-audit/bin/pip-audit || \
		($(PYTHON) -m venv .venv-audit && .venv-audit/bin/pip install --quiet pip-audit)
	.venv-audit/bin/pip-audit --requirement requirements.lock --no-deps --disable-pip --strict

$(EMULATORS_STAMP): requirements-emulators.lock | $(UV_STAMP)
	test -x $(EMULATORS)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(EMULATORS)
	$(UV_SYNC) $(EMULATORS)/bin/python requirements-emulators.lock
	# DuckDB would download its spatial extension at start: install the one from PyPI
	$(EMULATORS)/bin/python -c "import duckdb, duckdb_extension_spatial as e, pathlib; \
		duckdb.sql(f\"install '{pathlib.Path(e.__file__).parent}/extensions/v1.5.5/spatial.duckdb_extension'\")"
	rm -f $(EMULATORS)/.installed-* && touch $@

emulators: $(EMULATORS_STAMP)  ## the BigQuery emulator for the cloud tests (.venv-emulators)

terraform-check: $(TOOLS_STAMP)  ## terraform fmt -check and a checkov scan (validate needs providers)
	@if command -v terraform >/dev/null; then terraform fmt -check -recursive terraform; \
	else echo "terraform is not installed (not in Debian or PyPI): fmt check skipped" >&2; fi
	$(TOOLS)/bin/checkov --directory terraform --quiet --compact --skip-download

lint: install  ## ruff, the import layers (import-linter), types (mypy), SQL (sqlfluff)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	cd dbt && DBT_DUCKDB_PATH=$$(mktemp -d)/lint.duckdb ../$(BIN)/sqlfluff lint models

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:  ## remove local data, Prefect state and build output (not the venv)
	rm -rf data .prefect logs dbt/target dbt/logs
