# `make run` and `make test` bootstrap .venv on a fresh machine, then do their job.
# The stamp file makes the second call fast: pip runs only when pyproject.toml changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# the suite on every core (pytest-xdist); an idle worker takes tests from a busy one (worksteal:
# 188 s against 211 s with a file per worker on 2 cores, though a module's fixture may run twice)
PYTEST_PARALLEL ?= -n auto --dist worksteal

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setuptools warns on every editable install of a package mapped from other folders (weishang.model
# is model/) that same-named folders may shadow it; here they are the package itself: not shown
$(STAMP): pyproject.toml | $(BIN)/python
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/weishang run $(ARGS)

bench: $(STAMP)
	$(BIN)/weishang bench $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
