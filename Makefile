# ModelHub — `make run` serves the demo tenant, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_SETTINGS := DJANGO_SETTINGS_MODULE=config.settings.test

.PHONY: help install run serve bench bench-quick test test-slow chromium lint fmt typecheck check-migrations schema db-start db-stop db-status migrate seed clean

help:
	@echo "make run         set up, start the embedded database, migrate, seed demo, serve web + worker"
	@echo "make test        set up and run lint, migration and schema checks, and the test suite"
	@echo "make test-slow   the slow reliability tests"
	@echo "make bench       benchmarks against same-run baselines (~50-60 min: 10M log rows, 100 tenants), bench/results/latest.json"
	@echo "make bench-quick the short version (~4 min)"
	@echo "make serve       production settings: gunicorn + worker (ENV_FILE=... for the variables)"
	@echo "make db-start | db-stop | db-status   the embedded PostgreSQL in .pgdata/"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

.env: | $(STAMP)
	$(PY) -m apps.core.envfile

db-start: $(STAMP)
	@if [ -z "$$DATABASE_URL" ]; then $(PY) -m apps.core.embedded_db start; else echo "DATABASE_URL is set: using that server"; fi

db-stop: $(STAMP)
	@$(PY) -m apps.core.embedded_db stop

db-status: $(STAMP)
	@$(PY) -m apps.core.embedded_db status

migrate: db-start .env
	$(PY) manage.py migrate_schemas --noinput
	$(PY) manage.py tenant_template

seed: migrate
	$(PY) manage.py seed_demo

run: $(STAMP) .env
	$(PY) manage.py rundev

PROM_DIR ?= var/prometheus
PROD := DJANGO_SETTINGS_MODULE=config.settings.production

# make serve [ENV_FILE=/etc/modelhub.env]: gunicorn + qcluster, production settings
serve: $(STAMP) db-start
	@set -a; if [ -n "$(ENV_FILE)" ]; then . "$(ENV_FILE)"; fi; set +a; \
	export $(PROD) PROMETHEUS_MULTIPROC_DIR="$(abspath $(PROM_DIR))"; \
	$(PY) manage.py migrate_schemas --noinput && \
	$(PY) manage.py tenant_template && \
	$(PY) manage.py collectstatic --noinput -v 0 && \
	rm -rf "$$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$$PROMETHEUS_MULTIPROC_DIR" && \
	{ $(PY) manage.py qcluster & Q=$$!; \
	  $(VENV)/bin/gunicorn -c config/gunicorn.conf.py & G=$$!; \
	  trap 'kill -TERM $$G $$Q 2>/dev/null' INT TERM; \
	  wait $$G; kill -TERM $$Q 2>/dev/null; wait $$Q; }

# Both create and drop the database modelhub_bench on the project's PostgreSQL.
bench: $(STAMP) db-start
	$(PY) bench/run.py

bench-quick: $(STAMP) db-start
	$(PY) bench/run.py --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP)
	$(TEST_SETTINGS) $(VENV)/bin/mypy

check-migrations: db-start
	$(TEST_SETTINGS) $(PY) manage.py makemigrations --check --dry-run

schema: $(STAMP)
	$(TEST_SETTINGS) $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

# Test processes (pytest-xdist); each gets its own test database and files.
PYTEST_WORKERS ?= 2
CHROMIUM ?= /usr/bin/chromium

test: $(STAMP) db-start lint typecheck check-migrations schema chromium
	$(PY) -m pytest -m "not slow" -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The browser tests drive Debian's Chromium; installed here when missing and possible
# (root with apt-get), otherwise they are skipped with that reason.
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq chromium >/dev/null; } \
	  || echo "could not install chromium: the browser tests will be skipped"; \
	else echo "no $(CHROMIUM): the browser tests will be skipped (apt-get install chromium)"; fi

test-slow: $(STAMP) db-start
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

clean: db-stop
	rm -rf $(VENV) .pgdata staticfiles
