# Orchestra: `make run` starts an all-in-one instance, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
DATA := var
PORT ?= 8080

.PHONY: run test lint typecheck unit clean bench proof soak chromium bubblewrap oidc-provider axe-core

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

run: $(STAMP) bubblewrap
	$(BIN)/python scripts/run_local.py --data-dir $(DATA) --port $(PORT)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Everything, the proof suite (tests/proof) in its smoke profile included.
test: $(TEST_STAMP) lint chromium bubblewrap oidc-provider axe-core
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# The OpenID provider of the single sign-on tests (Node's `oidc-provider`, the version its
# package-lock.json pins), installed from the npm registry into tests/support/oidc/node_modules.
OIDC_DIR := tests/support/oidc
oidc-provider: $(OIDC_DIR)/node_modules/.installed

$(OIDC_DIR)/node_modules/.installed: $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	cd $(OIDC_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# axe-core, which the accessibility tests inject into every page of the website (the version its
# package-lock.json pins), installed from the npm registry into tests/support/axe/node_modules.
AXE_DIR := tests/support/axe
axe-core: $(AXE_DIR)/node_modules/.installed

$(AXE_DIR)/node_modules/.installed: $(AXE_DIR)/package.json $(AXE_DIR)/package-lock.json
	cd $(AXE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium for the browser tests, installed when missing (as root, with apt-get).
chromium:
	bash scripts/ensure-package.sh chromium chromium 'for the browser tests'

# Debian's bubblewrap, which runs sandboxed steps (docs/isolation.md), installed when missing (as
# root, with apt-get): the local workers of `make run` sandbox every step.
bubblewrap:
	bash scripts/ensure-package.sh bwrap bubblewrap 'for sandboxed steps'

# The proof suite alone, smoke profile (faults, bad input, load, attacks; docs/reliability.md).
proof: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests/proof

# Benchmarks (docs/performance.md): starts its own servers, workers and PostgreSQL databases,
# prints a table and writes bench/results/<date>.json with its plots. Takes about ten minutes.
bench: $(TEST_STAMP) bubblewrap
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py

# The proof suite (tests/proof, docs/reliability.md) at full length: faults, bad input, load and
# attacks, with the soak-only scenarios (20 runs per second for 10 minutes...). About half an hour.
soak: $(TEST_STAMP)
	ORCHESTRA_SOAK=1 $(BIN)/python -m pytest tests/proof -n 2 --dist loadgroup -m "not alone"
	ORCHESTRA_SOAK=1 $(BIN)/python -m pytest tests/proof -m alone

clean:
	rm -rf $(VENV) $(DATA) $(DATA)-workers .pytest_cache .mypy_cache .ruff_cache
