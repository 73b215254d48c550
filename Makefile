# Two commands set everything up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CHROMIUM ?= /usr/bin/chromium
PYTEST_ARGS ?=

.PHONY: install run demo test test-slow browser bench lock lint audit clean

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

install: $(BIN)/.installed

## Start the hub on the embedded PostgreSQL: API and dashboard on http://127.0.0.1:8080
run: install
	$(BIN)/workhub serve

## The hub with sample data and a simulated fleet, for a first look
demo: install
	$(BIN)/workhub demo

## Headless Chromium for the dashboard tests (Debian package; Playwright cannot download browsers here)
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "installing Debian chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

## Every test (the embedded server, or HUB_TEST_DATABASE_URL)
test: install browser
	$(BIN)/pytest $(PYTEST_ARGS)

## The long soak variants (marked slow), which `make test` leaves out
test-slow: install browser
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

bench: install
	$(BIN)/workhub bench

lint: install
	$(BIN)/ruff check workhub tests

audit: install
	$(BIN)/pip-audit -r requirements.lock --progress-spinner off

## Re-pin the dependencies after editing pyproject.toml
lock:
	$(BIN)/uv pip compile pyproject.toml --extra test --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache
