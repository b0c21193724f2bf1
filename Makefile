# Everything sets itself up: a fresh machine needs only python3, git and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCRATCH := .scratch

.PHONY: run stop reset test check lint types setup clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,ansible]'
	touch $(STAMP)

setup: $(STAMP)

## make run: apply the bundled examples in a scratch copy of this repository, then run the daemon on it
run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/run_example.py --scratch $(SCRATCH) --daemon

## make stop: stop the daemon of `make run` (from another terminal) and the example services it ran
stop: $(STAMP)
	$(BIN)/python scripts/run_example.py --scratch $(SCRATCH) --stop

## make reset: stop, then remove the scratch copy: the next `make run` starts from the bundled examples
reset: $(STAMP)
	$(BIN)/python scripts/run_example.py --scratch $(SCRATCH) --reset

## make test: the whole suite
test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check reconciler tests benchmarks scripts

types: $(STAMP)
	$(BIN)/mypy --strict reconciler

## make check: lint, types and tests, as CI runs them
check: lint types test

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	-[ ! -x $(BIN)/python ] || $(BIN)/python scripts/run_example.py --scratch $(SCRATCH) --stop
	rm -rf $(VENV) $(SCRATCH) build *.egg-info
