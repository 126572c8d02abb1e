"""deploy/docker-compose.yml, without a Docker engine: it follows the Compose Specification's
schema, runs every service with a real `taskfleet` command, sets only taskfleet settings with
values they accept, lets workers scale and stop within their grace, and mounts files that exist.

compose-spec.json is the Compose Specification's JSON schema, copied unchanged from
github.com/compose-spec/compose-spec, file schema/compose-spec.json at commit
00655e2222608fa6eaecdf12ac5195889ca2244a (Apache License 2.0)."""

import argparse
import json
import re
from collections.abc import Callable

import jsonschema
import pytest

from tests.deploy.manifests import (
    DEPLOY,
    HERE,
    WORKER_SERVICES,
    compose,
    compose_env,
    effective_settings,
    interpolate,
    taskfleet_services,
)

# The only variables set on containers that are not taskfleet's: each image's own.
FOREIGN_ENV = {
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
    "grafana/grafana": {
        "GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD",
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
    },
    "rabbitmq": set(),
    "prom/prometheus": set(),
    "prom/alertmanager": set(),
}  # fmt: skip


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    # The schema does catch a mistake.
    broken = compose()
    broken["services"]["api"]["stop_grace_periods"] = "45s"
    assert not validator.is_valid(broken)


def test_compose_runs_every_service(
    parse_command: Callable[[list[str]], argparse.Namespace],
) -> None:
    services = taskfleet_services()
    assert set(services) == {"migrate", "api", *WORKER_SERVICES}
    assert {"postgres", "rabbitmq", "prometheus", "grafana"} <= set(compose()["services"])
    for name, service in services.items():
        args = parse_command(service["command"])
        if name in WORKER_SERVICES:
            assert (args.command, args.name) == ("worker", WORKER_SERVICES[name])
        # One image, built once from the repository root with deploy/Dockerfile.
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert parse_command(services["migrate"]["command"]).command == "migrate"
    assert parse_command(services["api"]["command"]).command == "api"


def test_compose_sets_only_settings_with_good_values() -> None:
    for name, service in compose()["services"].items():
        env = compose_env(service)
        if name in taskfleet_services():
            settings = effective_settings(env)
            assert settings.database_url.endswith("@postgres:5432/taskfleet"), name
            assert "@rabbitmq:5672" in settings.amqp_url, name
            settings.require_jwt_secret()
        else:
            image = service["image"].split(":")[0]
            assert sorted(set(env) - FOREIGN_ENV[image]) == [], name


def test_compose_workers_scale_and_stop_gracefully() -> None:
    services = taskfleet_services()
    for name, service in services.items():
        if name == "migrate":
            assert service["restart"] == "no"
            assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
            continue
        grace = effective_settings(compose_env(service)).shutdown_grace_s
        assert duration_s(service["stop_grace_period"]) > grace, name
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["restart"] == "unless-stopped", name
        if name in WORKER_SERVICES:
            # `--scale` starts several: no fixed host port, no fixed container name.
            assert "ports" not in service, name
            assert "container_name" not in service, name


def duration_s(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert "".join(a + u for a, u in parts) == text, f"bad duration {text!r}"
    return sum(float(amount) * units[unit] for amount, unit in parts)


def test_compose_mounts_files_that_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"


def test_compose_publishes_ports_on_localhost_only() -> None:
    published = 0
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert interpolate(port).startswith("127.0.0.1:"), f"{name}: {port}"
            published += 1
    assert published >= 6  # api, grafana, prometheus, alertmanager, postgres, rabbitmq


def test_compose_refuses_to_start_without_a_jwt_secret() -> None:
    value = compose()["x-taskfleet-env"]["TASKFLEET_JWT_SECRET"]
    with pytest.raises(LookupError, match="TASKFLEET_JWT_SECRET"):
        interpolate(value, given={})
    # .env.example names it (empty: the operator fills it in), and deploy/.env stays private.
    example = (DEPLOY / ".env.example").read_text()
    assert re.search(r"^TASKFLEET_JWT_SECRET=$", example, re.MULTILINE)
    gitignore = (DEPLOY.parent / ".gitignore").read_text().splitlines()
    assert "deploy/.env" in gitignore
    # Every variable compose reads is in .env.example.
    named = set(re.findall(r"\$\{(\w+)", (DEPLOY / "docker-compose.yml").read_text()))
    assert named <= set(re.findall(r"^(\w+)=", example, re.MULTILINE))


def test_make_deps_starts_only_the_database_and_the_broker() -> None:
    makefile = (DEPLOY.parent / "Makefile").read_text()
    recipe = re.search(r"^deps:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "a deps target"
    [up] = [line for line in recipe[1].splitlines() if " up " in line]
    assert up.split()[-2:] == ["postgres", "rabbitmq"]
    assert {"postgres", "rabbitmq"} <= set(compose()["services"])
