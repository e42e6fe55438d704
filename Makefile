# Vigil — every command a developer or operator needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TEST_WORKERS ?= 2
PYTEST_ARGS ?=
CHROMIUM ?= /usr/bin/chromium

.DEFAULT_GOAL := help
.PHONY: help install install-dev demo test test-fast lint format check-deploy migrate serve worker beat \
        sync-schedules bench browser-deps schema clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(VENV)/.runtime: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt $(VENV)/.runtime
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(VENV)/.runtime ## Create .venv and install the runtime dependencies

install-dev: $(VENV)/.dev ## Also install test, lint and benchmark tools

migrate: install ## Apply migrations (also syncs the beat schedule)
	$(PY) manage.py migrate --noinput

MODE ?= investor
SEED ?= 42

demo: install ## The golden demo on SQLite (or $$DATABASE_URL): MODE=investor (default, < 60 s) | audit (writes and verifies an evidence package) | training
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py demo --mode $(MODE) --seed $(SEED) $(if $(filter audit,$(MODE)),--evidence demo-evidence,)
	$(if $(filter audit,$(MODE)),$(PY) manage.py verify_evidence "$$(ls -t demo-evidence/*.zip | head -1)",)
	@echo
	@echo "Next: 'make serve' and open http://127.0.0.1:8000/admin/ (login printed above on first run),"
	@echo "      API docs at http://127.0.0.1:8000/api/docs/"

test: install-dev ## Run the whole test suite (PostgreSQL/Redis tests run when DATABASE_URL/CELERY_BROKER_URL are set)
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: install-dev ## Tests without real workers, browsers or subprocesses
	$(VENV)/bin/pytest -n $(TEST_WORKERS) -m "not worker and not browser" $(PYTEST_ARGS)

lint: install-dev ## ruff check + ruff format --check + missing-migration check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: install-dev ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

check-deploy: install ## `check --deploy` with production settings and throwaway secrets
	VIGIL_ENV=production ALLOWED_HOSTS=vigil.example.com CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \
	SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(64))') \
	JWT_SIGNING_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(64))') \
	$(PY) manage.py check --deploy --fail-level WARNING

serve: install ## Development server on http://127.0.0.1:8000
	$(PY) manage.py runserver 127.0.0.1:8000

worker: install ## A Celery worker on every queue (needs CELERY_BROKER_URL)
	$(VENV)/bin/celery -A config worker --loglevel=INFO -Q default,events,assist,lifecycle,predict --concurrency=$${WORKER_CONCURRENCY:-2}

beat: install ## celery-beat with the database scheduler (edit schedules in the admin)
	$(PY) manage.py sync_schedules
	$(VENV)/bin/celery -A config beat --loglevel=INFO --scheduler django_celery_beat.schedulers:DatabaseScheduler

sync-schedules: install ## Write every periodic task into django-celery-beat (idempotent)
	$(PY) manage.py sync_schedules

schema: install ## Write the OpenAPI schema to docs/openapi.yaml (fails on any warning)
	$(PY) manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

bench: install-dev ## Run the benchmarks on PostgreSQL/Redis; results in bench/results/, summary in docs/benchmarks.md
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/vigil_bench} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-redis://127.0.0.1:6379/8} $(PY) bench/run.py $(BENCH)

browser-deps: ## Install Debian's chromium for the browser tests (needs root)
	@if [ -x $(CHROMIUM) ]; then echo "chromium present: $$($(CHROMIUM) --version)"; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && $(CHROMIUM) --version; fi

clean: ## Remove the venv, SQLite database and caches
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles demo-evidence .pytest_cache .ruff_cache .hypothesis
