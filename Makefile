# Everything a newcomer needs: `make demo` serves the demo, `make test` runs the whole suite.
# Only Python 3.11+ (with its venv module) and make are assumed; all else goes into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo serve test lint format openapi clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Migrate and seed the SQLite demo database, print API keys, serve on http://127.0.0.1:8000
demo: install
	$(BIN)/loyalty db upgrade
	$(BIN)/loyalty demo seed
	$(BIN)/loyalty serve

serve: install
	$(BIN)/loyalty serve

## Linters, type checks, layer contracts, then the test suite on SQLite and PostgreSQL
test: install lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check loyalty tests migrations
	$(BIN)/ruff format --check loyalty tests migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix loyalty tests migrations
	$(BIN)/ruff format loyalty tests migrations

openapi: install
	$(BIN)/loyalty openapi export

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
