# Set-up contract: `make demo` and `make test` work on a fresh clone (they create .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/choral demo

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check choral tests benchmarks
	$(BIN)/lint-imports

lint: $(STAMP)
	$(BIN)/ruff check choral tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/ruff format --check choral tests benchmarks

clean:
	rm -rf $(VENV) demo-output
