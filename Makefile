# `make run` and `make test` work on a fresh machine: everything goes into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BASE_PYTHON := $(VENV)/.base-python
SOURCES := setup.py $(shell find taskd sql migrations -type f -not -path '*/__pycache__/*')
export TASKD_DATA_DIR ?= $(CURDIR)/.taskd

.PHONY: FORCE run test test-text-ids test-pgbouncer test-citus lint typecheck check check-install check-unit check-better-auth check-clients clean bench bench-compare bench-events fuzz

# .venv is made from PYTHON, and made again when PYTHON names another interpreter, so that
# `make test PYTHON=...` tests on it and `make bench-compare PYTHON=...` runs taskd and the
# reference on the same one (bench/run.py refuses to compare servers on different ones).
$(BASE_PYTHON): FORCE
	@base="$$($(PYTHON) -c 'import os, sys; print(os.path.realpath(sys.executable))')"; \
	if [ "$$(cat $@ 2>/dev/null)" != "$$base" ]; then \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && echo "$$base" > $@; \
	fi

# A non-editable install, so the tests exercise exactly what `pip install .` ships. Errors only
# (-qq): a pip configuration's warnings, such as one per package its extra index lacks, would
# otherwise fill the screen before `make run` says where taskd is.
$(STAMP): $(SOURCES) $(BASE_PYTHON)
	$(BIN)/pip install -qq --disable-pip-version-check ".[test,dev]"
	touch $@

run: $(STAMP)
	$(BIN)/taskd serve

test: $(STAMP)
	$(BIN)/pytest tests

# The API tests again on a database of text user ids (Better Auth's default ids, README:
# Configuration); the rest of the suite does not depend on the kind of ids.
TEXT_IDS_TESTS := $(patsubst %,tests/test_%.py,tasks_api isolation idempotency changes \
	page_cache conditional listing data_layer auth openapi events)
test-text-ids: $(STAMP)
	TASKD_TEST_USER_IDS=text $(BIN)/pytest $(TEXT_IDS_TESTS)

# The suite again with the app behind PgBouncer in transaction mode (Debian's pgbouncer), on the
# server TASKD_TEST_DATABASE_URL names (default postgresql://postgres@127.0.0.1:5432/postgres).
test-pgbouncer: $(STAMP)
	bash tests/pgbouncer.sh

# The suite on a Citus coordinator with every table distributed by user (docs/SCALING.md):
# TASKD_TEST_CITUS_URL names its maintenance database, e.g.
# postgresql://postgres@127.0.0.1:9700/postgres. Without it, a clear skip (CI has no Citus).
test-citus:
ifeq ($(TASKD_TEST_CITUS_URL),)
	@echo "test-citus: SKIPPED (TASKD_TEST_CITUS_URL is not set)"
else
	$(MAKE) $(STAMP)
	$(BIN)/pytest tests
endif

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy taskd

check: lint typecheck test

# A non-editable install into a fresh venv outside the checkout, migrated, served and queried.
fuzz: $(STAMP)
	bash tests/fuzz.sh

check-install:
	PYTHON="$(PYTHON)" bash tests/check_install.sh

# Clients generated from a live taskd's /openapi.json (openapi-typescript + openapi-fetch,
# @hey-api/openapi-ts, openapi-python-client): `tsc --strict` and `mypy --strict` clean, and a
# typed flow each against that server. Installs its npm and PyPI pins under tests/clients/.
check-clients: $(STAMP)
	PYTHON="$(PYTHON)" bash tests/check_clients.sh

# taskd.service: `systemd-analyze verify` clean, `systemd-analyze security` exposure <= 2.5.
check-unit: $(STAMP)
	TASKD="$(CURDIR)/$(BIN)/taskd" bash tests/check_unit.sh

# The real Better Auth (npm, pinned in tests/better_auth/package-lock.json) in both of its id
# configurations signs users in and drives taskd with their JWTs. Needs Node.js 20+ and npm.
check-better-auth: $(STAMP)
	cd tests/better_auth && CI=true npm ci --no-audit --no-fund --loglevel=error </dev/null
	$(BIN)/pytest tests/better_auth

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Benchmarks measure the non-editable install in .venv (see bench/README.md). BENCH_ARGS
# passes options through, e.g. `make bench-compare BENCH_ARGS="--duration 5"`.
bench: $(STAMP)
	$(PYTHON) bench/run.py $(BENCH_ARGS)

bench-compare: $(STAMP)
	$(PYTHON) bench/run.py --compare $(BENCH_ARGS)

# Live updates: write-to-event latency, and 1000 idle streams' memory and cost to the mixed load.
bench-events: $(STAMP)
	$(PYTHON) bench/events.py $(BENCH_ARGS)
