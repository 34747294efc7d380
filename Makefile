# Two commands matter: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run dev test lint bench sample clean lock

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

## make run: set up, generate the bundled sample, run the pipeline for every organization
run: $(STAMP)
	$(BIN)/kare sample --out data/sample
	$(BIN)/kare demo --sample data/sample --warehouse data/warehouse.duckdb

## make dev: the Dagster UI on http://localhost:3000, with runs kept in .dagster_home/ across restarts
## and the instance settings of pipelines/dagster.yaml (the kare_warehouse pool: one run publishes at a time)
dev: $(STAMP)
	mkdir -p .dagster_home
	cp pipelines/dagster.yaml .dagster_home/dagster.yaml
	# Register the pool before the first run: on its first tick Dagster's queue does not yet know a pool
	# and would launch a whole batch of runs at once.
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster instance concurrency set kare_warehouse 1
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -w workspace.yaml

## make test: set up, lint, validate the bundled rules and the Dagster definitions, run the whole suite
test: $(STAMP)
	$(BIN)/ruff check kare_rules pipelines tests benchmarks
	$(BIN)/kare validate rules
	$(BIN)/kare test rules
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg check defs
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check kare_rules pipelines tests benchmarks
	$(BIN)/ruff format --check kare_rules pipelines tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) data .pytest_cache

## make lock: re-pin every dependency (needs uv: pip install uv)
lock:
	uv pip compile pyproject.toml --extra dev --extra pipeline --universal --python-version 3.11 --generate-hashes -o requirements.lock
