# One source of truth for every command a developer or CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

RUNTIME_LOCK := requirements/runtime.txt
DEV_LOCK := requirements/dev.txt
# The build backend (pyproject.toml's [build-system]), locked too: installs build without isolation.
BUILD_LOCK := requirements/build.txt
# Both locks are for CPython 3.11 on Linux (the image's and CI's); regenerate them with `make lock`.
COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform linux --custom-compile-command 'make lock'
LOCK := $(COMPILE) pyproject.toml

.PHONY: help install lock run test test-unit test-integration test-e2e test-chaos bench bench-reconcile soak
.PHONY: screenshots
.PHONY: bench-peers bench-peers-lock bench-open bench-replication bench-priority bench-pgbouncer bench-growth
.PHONY: lint format mypy check all clean deps compose-up compose-down settings-doc

help:  ## this list (bare `make` prints it)
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z0-9-]*:.*## / {printf "  %-17s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(STAMP)  ## a .venv with the exact releases of the dev lock, and taskfleet editable

# Exactly what the lock pins, every file checked against its hash; then the project itself,
# whose dependencies the lock holds already (tests/deploy/test_build.py checks that it does).
$(STAMP): pyproject.toml $(DEV_LOCK) $(BUILD_LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(BUILD_LOCK) -r $(DEV_LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

lock: install  ## pin every dependency, with hashes (requirements/*.txt), after changing pyproject.toml
	$(LOCK) -o $(RUNTIME_LOCK)
	$(LOCK) --group dev -o $(DEV_LOCK)
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		| $(COMPILE) - -o $(BUILD_LOCK)

# The deploy tests check the alert rules with promtool and Alertmanager's configuration with
# amtool; only `make test` needs them.
DEPLOY_TOOLS := $(BIN)/promtool $(BIN)/amtool
$(DEPLOY_TOOLS): | $(STAMP)
	deploy/tools/fetch-promtool $(BIN)

run: install  ## migrate, start the development fleet, print a token and an example request
	$(BIN)/taskfleet up

test: install $(DEPLOY_TOOLS)  ## the whole suite against the real RabbitMQ and PostgreSQL, with line coverage
	$(BIN)/pytest --cov --cov-report=term --durations=10

test-unit: install  ## tests/unit only
	$(BIN)/pytest tests/unit

test-integration: install  ## tests/integration only (RabbitMQ and PostgreSQL)
	$(BIN)/pytest tests/integration

test-e2e: install  ## tests/e2e only: the fleet's processes end to end
	$(BIN)/pytest tests/e2e

screenshots: install  ## the console's browser tests, keeping their screenshots in docs/console/
	CONSOLE_SHOTS=docs $(BIN)/pytest tests/e2e/test_console.py tests/e2e/test_console_media.py \
		tests/e2e/test_console_operators.py

test-chaos: install  ## the fault-injection suite at full size, with its one-line summaries
	CHAOS_FULL=1 $(BIN)/pytest tests/chaos -s

bench: install  ## workload W1 via amqp and api on a private fleet, CPU split, peak RSS
	$(BIN)/python bench/run.py

# The peers of `make bench-peers`, each in a virtualenv of its own from a hashed lock.
PEER_VENVS := .bench-venvs
PEERS := loop dramatiq celery

$(PEER_VENVS)/%/.installed-stamp: bench/peers/requirements-%.txt
	@test -x $(PEER_VENVS)/$*/bin/python || $(PYTHON) -m venv $(PEER_VENVS)/$*
	$(PEER_VENVS)/$*/bin/python -m pip install -q --require-hashes -r $<
	@touch $@

bench-peers: install $(PEERS:%=$(PEER_VENVS)/%/.installed-stamp)  ## W1 on taskfleet, a hand-written loop, Dramatiq, Celery: alternating rounds, one table
	$(BIN)/python bench/compare.py $(ARGS)

bench-peers-lock: install  ## pin the peers' versions, with hashes, after changing bench/peers/requirements-*.in
	for p in $(PEERS); do $(subst make lock,make bench-peers-lock,$(COMPILE)) \
		bench/peers/requirements-$$p.in \
		-o bench/peers/requirements-$$p.txt || exit 1; done

bench-open: install  ## W1 open-loop at 50 % and 80 % of the measured maximum: latency percentiles, RSS
	$(BIN)/python bench/openloop.py $(ARGS)

bench-replication: install  ## W1 on a primary with a streaming standby: synchronous against asynchronous replication
	$(BIN)/python bench/replication.py

# A PgBouncer that tracks prepared statements (Debian 12's 1.18 does not), built from source.
NEW_PGBOUNCER := $(PEER_VENVS)/pgbouncer/bin/pgbouncer
$(NEW_PGBOUNCER):
	deploy/tools/build-pgbouncer $(PEER_VENVS)/pgbouncer

bench-pgbouncer: install $(NEW_PGBOUNCER)  ## W1 straight and through PgBouncer (transaction mode): statement cache off, prepared statements tracked
	$(BIN)/python bench/pgbouncer.py --new-pgbouncer $(NEW_PGBOUNCER) $(ARGS)

bench-growth: install  ## W1 on an empty database and on 1,000,000 finished tasks, plans, retention while W1 runs
	$(BIN)/python bench/growth.py $(ARGS)

bench-priority: install  ## 20,000 normal chat tasks queued, a trickle of high ones: the wait of each level
	$(BIN)/python bench/priority.py $(ARGS)

bench-reconcile: install  ## the reconciler's passes on a table of 1,000,000 tasks, with plans
	$(BIN)/python bench/reconcile.py

soak: install  ## 30 minutes of mixed traffic, a worker killed every 10 s, PostgreSQL restarted every 5 min
	$(BIN)/python bench/soak.py

lint: install  ## ruff, and the import contracts that keep the layers (pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install  ## rewrite the code in ruff's format, and apply ruff's safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

mypy: install  ## mypy --strict on the kernel, the command line, the services, the tests and bench/
	$(BIN)/mypy shared/taskfleet cli/taskfleet_cli services/*/*/ tests bench

check: lint mypy  ## lint and mypy: what CI runs before the tests

settings-doc: install  ## docs/configuration.md from the settings' field descriptions
	$(BIN)/python -m taskfleet_cli.settings_doc

deps:  ## PostgreSQL and RabbitMQ alone in Docker (127.0.0.1), for `make run`; prints their URLs
	@# compose reads the whole file: the JWT secret it requires is for the fleet, not for these two.
	TASKFLEET_JWT_SECRET=$${TASKFLEET_JWT_SECRET:-not-used-by-postgres-or-rabbitmq} \
		docker compose -f deploy/docker-compose.yml up -d --wait postgres rabbitmq
	@echo "export DATABASE_URL=postgresql://taskfleet:taskfleet@127.0.0.1:$${POSTGRES_HOST_PORT:-5432}/taskfleet"
	@echo "export AMQP_URL=amqp://taskfleet:taskfleet@127.0.0.1:$${AMQP_HOST_PORT:-5672}/"

compose-up:  ## the whole fleet, Prometheus and Grafana in Docker (docs/operations.md)
	docker compose -f deploy/docker-compose.yml up -d --build

compose-down:  ## stop it; the volumes (database, broker, metrics) stay
	docker compose -f deploy/docker-compose.yml down

all: check test  ## check, then the whole suite

clean:  ## remove the venv and the tools' caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
