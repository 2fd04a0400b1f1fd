# Falconet: the two commands of the README.
#   make run   set up (apt packages, kernel headers, virtualenv, plugins) and start live monitoring
#   make test  set up what the tests need (also container runtimes and Prometheus) and run them all
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
export VENV PYTHON
BIN := $(VENV)/bin
RUN_ARGS ?=
CONFIG ?= falconet.yaml

.PHONY: run test setup setup-test lint unit bench clean install

setup:
	@scripts/setup.sh run

setup-test:
	@scripts/setup.sh test

run: setup
	$(BIN)/falconet run -c $(CONFIG) $(RUN_ARGS)

lint: setup
	$(BIN)/ruff check core plugins tests bench
	$(BIN)/mypy

test: setup-test
	$(BIN)/ruff check core plugins tests bench
	$(BIN)/mypy
	scripts/run-tests.sh

unit: setup
	$(BIN)/python -m pytest -q -m "not root" tests

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) build core/*.egg-info plugins/*/*.egg-info

# Falconet as a host service: /opt/falconet/venv, /etc/falconet, the systemd unit (root).
install:
	@scripts/install.sh
