# RocketWS: `make run` serves, `make test` tests. Both set up what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := tests/node/node_modules/.package-lock.json
# Addresses: empty = as settings say (defaults in rocketws/config.py); e.g. WS_CONN=:8000.
WS_CONN ?=
MS_CONN ?=
CONN_FLAGS = $(strip $(if $(MS_CONN),--ms-conn=$(MS_CONN)) $(if $(WS_CONN),--ws-conn=$(WS_CONN)))

LINTED := rocketws tests benchmarks manage.py settings.py  # mypy --strict: files in pyproject.toml

.PHONY: run run_bg stop shell demo test lint docker sysdeps clean

# System packages the test suite needs (installed with apt-get when missing; CI is root).
sysdeps:
	@bash scripts/sysdeps.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { bash scripts/sysdeps.sh venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,redis,bench]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) manage.py runserver $(CONN_FLAGS)

run_bg: $(STAMP)
	@nohup $(PY) manage.py runserver $(CONN_FLAGS) >rocketws.log 2>&1 & echo $$! > rocketws.pid
	@echo "RocketWS started (pid $$(cat rocketws.pid), log rocketws.log); stop with: make stop"

stop:
	@if [ -f rocketws.pid ]; then kill -TERM $$(cat rocketws.pid) && rm -f rocketws.pid; fi

# Backend console against the local server (`make run` or `make run_bg` first).
shell: $(STAMP)
	$(PY) manage.py shell $(CONN_FLAGS)

# The demo chat app (rocketws/demo): http://127.0.0.1:8000/ with RocketWS on WS_CONN.
demo: $(STAMP)
	$(PY) manage.py demo $(if $(WS_CONN),--ws-conn=$(WS_CONN))

# Node.js clients of the handshake tests (the `ws` package), installed from the lockfile.
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json | sysdeps
	cd tests/node && npm ci --no-audit --no-fund

test: $(STAMP) sysdeps $(NODE_STAMP)
	$(PY) manage.py tests

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

docker:
	docker build -t rocketws .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
