# `make test` and `make demo` work on a fresh clone: each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint clean wheel

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	@# An older checkout installed the distribution as `baton`; it would shadow this one.
	$(BIN)/pip uninstall --quiet --yes baton 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[dev,cluster,agents]'
	touch $(STAMP)

# The tests get a throwaway PostgreSQL server (installed from Debian's packages when
# missing), unless BATON_TEST_POSTGRES names one already.
test: $(STAMP)
	.ci/postgres run $(BIN)/python -m pytest -q

# mypy and import-linter cannot follow setuptools' editable package-dir mapping, so they
# check a tree of links laid out as the installed package is. import-linter checks the
# layering DESIGN.md promises (its contracts are in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	rm -rf build/typecheck && mkdir -p build/typecheck/baton
	for f in baton/*.py baton/cli; do ln -s "$$PWD/$$f" build/typecheck/baton/; done
	for d in events actors projections; do ln -s "$$PWD/$$d" build/typecheck/baton/$$d; done
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p baton
	cd build/typecheck && PYTHONPATH=. ../../$(BIN)/lint-imports --no-cache ../../pyproject.toml

# PostgreSQL's rows need a server: a throwaway one, as for the tests.
bench: $(STAMP)
	$(BIN)/python benchmarks/hot_path.py
	.ci/postgres run $(BIN)/python benchmarks/append.py
	$(BIN)/python benchmarks/fold.py
	.ci/postgres run $(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/replay.py
	$(BIN)/python benchmarks/recovery.py
	.ci/postgres run $(BIN)/python benchmarks/many_runs.py
	$(BIN)/python benchmarks/export.py
	$(BIN)/python benchmarks/async_handlers.py
	.ci/postgres run $(BIN)/python benchmarks/nested.py

DEMO_RUN := audit-$(shell date +%Y%m%d-%H%M%S)

# Audit the standard library on a local Ray, then show the run's ledger.
demo: $(STAMP)
	$(BIN)/baton run examples/stdlib_audit.py --run-id $(DEMO_RUN)
	$(BIN)/baton show $(DEMO_RUN)

# A wheel of Baton for the nodes of a cluster: pip install 'dist/baton_ray-*.whl[cluster]'.
wheel: $(STAMP)
	rm -rf dist
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	rm -rf build/lib build/bdist.*
	@ls dist/*.whl

clean:
	rm -rf $(VENV) .baton build dist *.egg-info benchmarks/peers/.venv-*

# Baton beside LangGraph, Temporal and raw Ray on the same work: one table. Each peer
# gets a venv of its own under benchmarks/peers/, made again when its requirements change.
# PEERS_ARGS=--quick for 500 tasks; PEERS_ARGS="--tasks 2000,20000" for other sizes.
PEERS := benchmarks/peers

$(PEERS)/.venv-%/.installed: $(PEERS)/requirements-%.txt
	rm -rf $(PEERS)/.venv-$*
	$(PYTHON) -m venv $(PEERS)/.venv-$*
	$(PEERS)/.venv-$*/bin/pip install --quiet --upgrade pip
	$(PEERS)/.venv-$*/bin/pip install --quiet -r $<
	touch $@

.PHONY: bench-peers
bench-peers: $(STAMP) $(PEERS)/.venv-langgraph/.installed $(PEERS)/.venv-temporal/.installed \
		$(PEERS)/.venv-dbos/.installed
	$(BIN)/python $(PEERS)/compare.py $(PEERS_ARGS)
