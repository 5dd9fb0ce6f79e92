# Two commands do all the set-up on a fresh machine (Python 3.11):
#   make book   build the rendered course into _build/html (the main job)
#   make test   run the project's tests
#   make check  the quick tier: every test but the book, the browser and full-class grading
#   make kit    build the student kit (a wheel without answers) into _build/kit
#   make site   build the folder to publish (book, notebooks, kit) into _build/html, with the
#               deployment's settings from SITE_* variables (tools/kit/site_config.py)
# Both create or reuse the virtualenv in .venv from requirements.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is installed on its own first, so that requirements.txt (torch>=2.3) keeps it.
# Override for a GPU machine, e.g.  make TORCH="torch==2.13.0" (PyPI's Linux wheel is CUDA-enabled)
TORCH ?= torch==2.13.0
# One torch thread per process: the tests and the book run several processes side by side,
# and oversubscribed OpenMP threads slow small tensor work down by orders of magnitude.
export OMP_NUM_THREADS ?= 1
# nbgrader runs `alembic` by name: the virtualenv's bin must come first.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: book test check bytecode lint notebooks exercises fixtures vendor kit site clean

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

vendor: $(BIN)/.installed
	bash tools/system_packages.sh book
	bash tools/vendor_assets.sh

# The book links the kit and publishes it, so the kit is built first.
book: $(BIN)/.installed vendor kit
	$(BIN)/jupyter-book build . -W -n --keep-going

kit: $(BIN)/.installed
	$(BIN)/python -m autograder kit --output _build/kit

# What .github/workflows/pages.yml publishes: _build/html, built with the deployment's settings.
site: $(BIN)/.installed vendor kit
	$(BIN)/python tools/kit/site_config.py > _build/site-config.yml
	$(BIN)/jupyter-book build . -W -n --keep-going --config _build/site-config.yml
	@echo "publish _build/html (the book, every exercise notebook, the kit)"

# The course package's bytecode, written ahead: where PYTHONDONTWRITEBYTECODE is set (it is on this project's machines),
# no process writes it (a sandboxed kernel never can), and each of the hundreds of grading kernels and
# commands a test run starts compiles the package again; compileall writes it regardless, for changed sources only.
bytecode: $(BIN)/.installed
	$(BIN)/python -m compileall -q autograder

# ruff: the linter and the formatter (settings in pyproject.toml); CI fails on either.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(BIN)/.installed vendor lint bytecode
	bash tools/system_packages.sh test
	$(BIN)/python -m pytest -n auto --dist loadgroup

# The quick tier for authors: the markers are declared in pyproject.toml (tests/conftest.py sets them).
check: $(BIN)/.installed lint bytecode
	bash tools/system_packages.sh test
	$(BIN)/python -m pytest -n auto --dist loadgroup -m "not book and not browser and not grading"

# After editing a text notebook (solutions/<a>/<a>.md) or a declaration (autograder/exercises/<a>.py):
# the nbgrader notebooks, the book's tables and exercise reference, the student notebooks and the fixtures.
# `make notebooks A="ch04_scaled_dot_product"` does one assignment.
notebooks: $(BIN)/.installed
	$(BIN)/python -m autograder notebooks $(A)
	$(BIN)/python -m autograder release $(A)
	$(BIN)/python -m autograder fixtures $(A)

# Regenerate the student notebooks from solutions/ (never edit exercises/ by hand).
exercises: $(BIN)/.installed
	$(BIN)/python -m autograder release

# Regenerate the visible-check fixtures from the reference solutions.
fixtures: $(BIN)/.installed
	$(BIN)/python -m autograder fixtures

clean:
	rm -rf _build
