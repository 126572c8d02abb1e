# One source of truth for every command a developer or CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-unit test-integration test-e2e test-chaos bench bench-reconcile soak lint format mypy check all clean settings-doc
.PHONY: compose-up compose-down

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The deploy tests check the alert rules with promtool; only `make test` needs it.
$(BIN)/promtool: | $(STAMP)
	deploy/tools/fetch-promtool $(BIN)

run: install  ## migrate, start the development fleet, print a token and an example request
	$(BIN)/taskfleet up

test: install $(BIN)/promtool  ## the whole suite against the real RabbitMQ and PostgreSQL, with line coverage
	$(BIN)/pytest --cov --cov-report=term --durations=10

test-unit: install
	$(BIN)/pytest tests/unit

test-integration: install
	$(BIN)/pytest tests/integration

test-e2e: install
	$(BIN)/pytest tests/e2e

test-chaos: install  ## the fault-injection suite at full size, with its one-line summaries
	CHAOS_FULL=1 $(BIN)/pytest tests/chaos -s

bench: install  ## workload W1 via amqp and api on a private fleet, CPU split, peak RSS
	$(BIN)/python bench/run.py

bench-reconcile: install  ## the reconciler's passes on a table of 1,000,000 tasks, with plans
	$(BIN)/python bench/reconcile.py

soak: install  ## 30 minutes of mixed traffic, a worker killed every 10 s, PostgreSQL restarted every 5 min
	$(BIN)/python bench/soak.py

lint: install  ## ruff, and the import contracts that keep the layers (pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

mypy: install
	$(BIN)/mypy shared/taskfleet cli/taskfleet_cli services/*/*/

check: lint mypy

settings-doc: install  ## docs/configuration.md from the settings' field descriptions
	$(BIN)/python -m taskfleet_cli.settings_doc

compose-up:  ## the whole fleet, Prometheus and Grafana in Docker (docs/operations.md)
	docker compose -f deploy/docker-compose.yml up -d --build

compose-down:  ## stop it; the volumes (database, broker, metrics) stay
	docker compose -f deploy/docker-compose.yml down

all: check test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
