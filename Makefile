# The two commands a new user needs: `make run` and `make test`. Both set everything up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_DIR := tests/interop/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
HOST018_DIR := tests/interop/host018
HOST018_STAMP := $(HOST018_DIR)/node_modules/.installed
DATA_DIR ?= ./data
HOST ?= 127.0.0.1
PORT ?= 9000

.PHONY: run test lint typecheck pytest fuzz bench bench-scale bench-replicas clean node floors

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(HOST018_STAMP): $(HOST018_DIR)/package.json $(HOST018_DIR)/package-lock.json
	cd $(HOST018_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(HOST018_STAMP)

node: $(NODE_STAMP) $(HOST018_STAMP)

run: $(STAMP)
	MALLOC_ARENA_MAX=$${MALLOC_ARENA_MAX:-2} $(BIN)/space-manager --data-dir $(DATA_DIR) serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check manager tests migrations $(wildcard bench)
	$(BIN)/ruff format --check manager tests migrations $(wildcard bench)

typecheck: $(STAMP)
	$(BIN)/mypy manager

pytest: $(STAMP) $(NODE_STAMP) $(HOST018_STAMP)
	$(BIN)/pytest -q -rfEs

test: lint typecheck pytest

# Every dependency at the lowest version pyproject.toml allows, in a venv of its own
# (.ci/floors; FLOORS_VENV=dir keeps it), then ruff and the fast tests against them.
floors: $(NODE_STAMP) $(HOST018_STAMP)
	.ci/floors

# Hours of examples per test: no per-test time limit (CI runs a sample under the default one)
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100000} $(BIN)/pytest -q --timeout=0 tests/fuzz tests/mux/test_properties.py
	SCHEMATHESIS_EXAMPLES=$${SCHEMATHESIS_EXAMPLES:-500} $(BIN)/pytest -q --timeout=0 tests/web/test_openapi.py

bench: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m bench.run

# 10,000 idle Hubs on one process, then left idle for BENCH_STEADY_S (default 600) seconds
bench-scale: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m bench.scale 10000 --steady $${BENCH_STEADY_S:-600}

# Several replicas on PostgreSQL (BENCH_POSTGRES_URL; its database is emptied): forwarding
# cost, then 10,000 Hubs on `serve --workers 2` held for BENCH_STEADY_S (default 600) seconds
bench-replicas: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m bench.replicas
	$(BIN)/python -m bench.workers_scale --steady $${BENCH_STEADY_S:-600}

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules $(HOST018_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache
