# Everything a newcomer needs: `make demo` serves the demo, `make test` runs the whole suite.
# Only Python 3.11+ (with its venv module) and make are assumed; all else goes into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo serve test lint format openapi translations clean

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
## The suite runs on two workers (pytest-xdist), each with its own SQLite file and PostgreSQL
## database. The fault tests restart the PostgreSQL server and kill app servers, which would
## cut the other worker's connections mid-test: they run alone, after the rest. Branch
## coverage is added up over both runs and reported at the end.
test: install lint
	$(BIN)/pytest -n 2 --ignore=tests/faults --cov --cov-report=
	$(BIN)/pytest tests/faults --cov --cov-append --cov-report=term:skip-covered

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

## The console's languages: extract its strings into messages.pot, merge them into each
## language's messages.po (translate what is new or fuzzy there), compile the committed .mo
TRANSLATIONS := loyalty/console/translations
translations: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output \
		--project loyalty -o $(TRANSLATIONS)/messages.pot .
	$(BIN)/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) --ignore-obsolete
	$(BIN)/pybabel compile -d $(TRANSLATIONS) --statistics

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache .hypothesis .schemathesis .import_linter_cache .coverage .coverage.* htmlcov
