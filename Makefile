# Set-up and the two commands of the README. Everything installs into the repository:
# .venv/ (Python packages) and .tools/bun/ (Bun from the npm registry).
PYTHON ?= python3
VENV := .venv
BUN := .tools/bun/node_modules/.bin/bun

.PHONY: install system-packages bytecode demo test lint schemas

install: $(VENV)/.installed $(BUN) system-packages bytecode

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

$(BUN):
	npm install --silent --no-audit --no-fund --prefix .tools/bun bun@1
	$(BUN) --version

# The package's bytecode, written now: where PYTHONDONTWRITEBYTECODE is set (as in many
# containers) Python never caches it, and every command would compile ~60 modules again (~150 ms).
# Only what changed since the last `make install` is compiled.
bytecode: $(VENV)/.installed
	$(VENV)/bin/python -m compileall -q src

# bubblewrap gives the strongest isolation tier; chromium runs the viewer's browser tests.
# Installed when we may (root with apt-get), else said once.
SYSTEM_PACKAGES := bubblewrap:bwrap chromium:chromium

system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v "$${pair#*:}" >/dev/null 2>&1 || missing="$$missing $${pair%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 $$missing >/dev/null; \
	  else \
	    echo "note: not installed:$$missing (bubblewrap: runs fall back to a weaker isolation tier;" \
	         "chromium: the browser tests are skipped)"; \
	  fi; \
	fi

# The main job: the fake lane on r1-string-slugify, then its readable report.
demo: install
	@out=$$(mktemp); status=0; \
	harness/evals/run-case.sh r1-string-slugify --json > $$out || status=$$?; \
	cat "$$($(VENV)/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_dir"])' $$out)/report.md"; \
	rm -f $$out; exit $$status

# One worker per core, a test file's tests on one worker (its module fixtures built once), files
# handed out in collection order, where tests/conftest.py puts the longest first; the slowest
# tests are listed at the end, so a slow one shows.
# The tests' /tmp is a private tmpfs where the machine allows it (tools/with_tmp_on_tmpfs.sh).
# One worker more than cores: much of the suite waits on processes it started (pi, Ray, npm,
# time limits); on 2 cores, 3 workers took 322 s where 2 took 348-368 s.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: install
	tools/with_tmp_on_tmpfs.sh $(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15
	$(MAKE) --no-print-directory lint

# ruff everywhere; mypy on the package (strict on core/, evidence/, sandbox/: pyproject.toml).
lint:
	$(VENV)/bin/ruff check $(wildcard src tests tools harness benchmarks)
	$(VENV)/bin/mypy

schemas:
	$(VENV)/bin/cto-harness schemas --write --dir schemas
