# The documented commands. `make up` runs the whole stack; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/ledger
export REDIS_URL ?= redis://127.0.0.1:6379/0
export PORT ?= 8000
export FLOWER_PORT ?= 5555

.PHONY: install up test migrate bench lint env clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) scripts/check_services.py --create-db
	$(PY) manage.py migrate --noinput

# The first `make up` writes .env with a fresh SECRET_KEY and Flower and metrics credentials
# (config/settings/local.py, through config/env_file.py); later runs keep it.
up: migrate
	$(PY) manage.py runstack --no-migrate  # `migrate` above already created and migrated the database

test: install
	DATABASE_URL=$${TEST_DATABASE_URL:-$(DATABASE_URL)} REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/15} \
		$(PY) scripts/check_services.py
	DATABASE_URL=$${TEST_DATABASE_URL:-$(DATABASE_URL)} REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/15} \
		$(PY) -m pytest $(PYTEST_ARGS)

# The benchmark (docs/performance.md): its own database and Redis database, never the dev stack's.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/ledger_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/14
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $(BENCH_STAMP)

# wrk drives the HTTP closed loops (docs/performance.md); Debian's package, installed when missing and
# possible, else the bench falls back to its Python load generator and records which one ran.
bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 \
		|| echo "warning: wrk is not installed (apt-get install wrk); the HTTP closed loops use Python" >&2
	DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) $(PY) scripts/check_services.py --create-db
	$(PY) -m bench --database-url $(BENCH_DATABASE_URL) --redis-url $(BENCH_REDIS_URL) $(BENCH_ARGS)

env: install
	$(PY) manage.py init_env

# Checks only, never rewrites a file: `ruff check --fix .` and `ruff format .` do that by hand.
lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
