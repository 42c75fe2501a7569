# Nertz — the two commands: `make demo` (the whole pipeline on real data) and `make test`.
# Needs only python3 (>= 3.11) and make; uv and everything else come from PyPI.

PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv

.PHONY: install demo demo-qwen test chaos lint format bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# installed = this stamp newer than the lockfile, every pyproject.toml and every module of ours: then
# `make demo` and `make test` start at once (a check of the environment costs ~0.9 s)
STAMP := $(VENV)/.nertz-installed
OURS := uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml apps/*/pyproject.toml) \
	$(shell find libs services apps -name '*.py' -not -path '*/__pycache__/*' 2>/dev/null)

install: $(STAMP)  ## install the locked environment into .venv (uv from PyPI if missing)

$(STAMP): $(OURS)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	@$(UV) sync --frozen --quiet
	@$(VENV)/bin/python -m compileall -q -j 0 libs/*/src services/*/src apps/*/src  # our own modules too (up to date: ~0.3 s)
	@touch $@

demo: install  ## run the five services on embedded NATS + Postgres and replay the bundled Bybit data
	$(VENV)/bin/nertz demo

demo-qwen: install  ## the demo with Qwen judging: the real dashscope SDK against a local fake DashScope
	$(VENV)/bin/nertz demo --qwen

test: install lint  ## lint, then the whole test suite against real NATS and Postgres
	$(VENV)/bin/python -m pytest

chaos: install  ## the long chaos suite: SIGKILLs of every service, NATS and Postgres outages, vs an uninterrupted run
	$(VENV)/bin/nertz chaos

lint: install  ## ruff lint and format check, mypy type check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install  ## run the benchmarks in bench/ (prints figures; not part of the tests)
	@for b in bench/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:  ## remove the environment and the demo's data
	rm -rf $(VENV) var
