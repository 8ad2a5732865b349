# dialgate — `make run` starts the whole stack with a demo campaign, `make test` runs the suite.
# Both create their own virtual environment in .venv (and install the page's chart library
# with npm into control/web/vendor/node_modules).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VENDOR := control/web/vendor

.PHONY: run test unit integration faults lint typecheck clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml $(VENDOR)/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	npm ci --prefix $(VENDOR) --no-audit --no-fund --loglevel=error
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dialgate up --demo --workers 2

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

faults: $(STAMP)
	$(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check shared control worker tests bench
	$(BIN)/ruff format --check shared control worker tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(VENDOR)/node_modules .pytest_cache test-output dialgate.db dialgate.db-*
