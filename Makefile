# `make test` and `make demo` work on a fresh clone: each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy events baton

bench: $(STAMP)
	$(BIN)/python benchmarks/append.py
	$(BIN)/python benchmarks/fold.py

demo: $(STAMP)
	@echo "make demo arrives with the Ray runtime (issue 3); until then: make test, make bench"

clean:
	rm -rf $(VENV) .baton build *.egg-info
