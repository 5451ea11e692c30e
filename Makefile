# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SERVICES := $(PY) scripts/services
PYTEST_ARGS ?=

.PHONY: run test test-deps venv services services-down status migrate topics lint bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "error: could not create a virtualenv; on Debian run: apt-get install -y python3-venv" >&2; exit 1; }
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

services: venv
	$(SERVICES) up

services-down:
	$(SERVICES) down

status:
	$(SERVICES) status

migrate: services
	$(PY) manage.py migrate --noinput

topics: migrate
	$(PY) manage.py kafka create-topics

## run: the whole system (services, migrations, topics, then every process in the Procfile).
run: topics
	$(PY) manage.py coins_dev_setup
	$(PY) manage.py collectstatic --noinput -v0
	rm -rf .local/prometheus && mkdir -p .local/prometheus
	PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/.local/prometheus PATH=$(CURDIR)/$(VENV)/bin:$$PATH \
		$(VENV)/bin/honcho start -f Procfile

test-deps:
	scripts/install-test-deps

## test: the whole test suite on the real PostgreSQL, Kafka and Redis.
test: services test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

clean: services-down
	rm -rf .local
