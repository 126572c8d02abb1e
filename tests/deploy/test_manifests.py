"""deploy/ checked without a Docker engine or a cluster: the compose file against the
Compose Specification's schema, the Kubernetes manifests with kubernetes-validate (KEDA's
resources against the part of KEDA's CRD schema they use), the Dockerfile by reading it; and
across all of them, that every command is a real `taskfleet` command, every variable they
set is a taskfleet setting (with a value it accepts), and that ports, queues, grace periods
and the broker's consumer_timeout agree with the code.

compose-spec.json is the Compose Specification's JSON schema, copied unchanged from
github.com/compose-spec/compose-spec, file schema/compose-spec.json at commit
00655e2222608fa6eaecdf12ac5195889ca2244a (Apache License 2.0).
"""

import argparse
import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import kubernetes_validate
import pytest
import yaml
from aiohttp import web

from fleet_api.settings import ApiSettings
from taskfleet.core.constants import QUEUE_BY_WORKER, QUEUES
from taskfleet.core.settings import Settings, load_settings
from taskfleet.runtime import probe
from taskfleet.runtime.health import add_health_routes, serve
from taskfleet.runtime.probe import command_of, health_port
from taskfleet_cli import main as cli
from taskfleet_cli.configs import SERVICE_SETTINGS

HERE = Path(__file__).parent
DEPLOY = HERE.parents[1] / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"

# The kernel's and every service's: a container may set any of them.
EVERY_CLASS = (Settings, *SERVICE_SETTINGS.values())
SETTINGS = frozenset(
    str(field.validation_alias)
    for cls in EVERY_CLASS
    for field in cls.model_fields.values()
    if field.validation_alias is not None
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
}  # fmt: skip
# Set by the Dockerfile for Python itself, not for taskfleet.
IMAGE_ENV = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
WORKER_SERVICES = {f"{name}-worker": name for name in QUEUE_BY_WORKER}
LONGEST_DEADLINE_S = max(spec.deadline_s for spec in QUEUES.values())


@pytest.fixture
def parse_command(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], argparse.Namespace]:
    """Parse `taskfleet ARGV` with the real parser. The workers of the contract (DESIGN.md §8)
    are accepted even while one of them is not registered in the CLI yet."""
    for name in QUEUE_BY_WORKER:
        monkeypatch.setitem(cli.WORKERS, name, cli.WORKERS.get(name, f"{name}_worker.main"))
    parser = cli.build_parser()

    def parse(argv: list[str]) -> argparse.Namespace:
        assert argv, "an empty command"
        assert argv[0] in cli.COMMANDS, f"taskfleet {argv[0]}: no such command"
        try:
            return parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"taskfleet {' '.join(argv)}: the command line refuses it")

    return parse


S = TypeVar("S", bound=Settings)


def effective_settings(env: dict[str, str], cls: type[S] = Settings) -> S:  # type: ignore[assignment]
    """The settings (`cls`) a container with `env` runs with (only its own variables); every
    value is checked by each class that reads it."""
    unknown = set(env) - SETTINGS
    assert not unknown, f"not taskfleet settings: {sorted(unknown)}"
    for every in EVERY_CLASS:
        every.load(**env)
    return cls.load(**env)


def test_the_command_checks_catch_mistakes(
    parse_command: Callable[[list[str]], argparse.Namespace],
) -> None:
    assert parse_command(["worker", "doc", "--concurrency", "2"]).name == "doc"
    assert parse_command(["cleanup", "--older-than", "30d"]).older_than == "30d"
    for wrong in (["serve"], ["worker", "gpu"], ["api", "--prot", "1"], ["migrate", "now"]):
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            parse_command(wrong)
    with pytest.raises(AssertionError, match="not taskfleet settings"):
        effective_settings({"DATABASE_URL": "postgresql://x/y", "DB_URL": "postgresql://x/y"})


# -- docker compose -------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def interpolate(value: Any) -> str:
    """Compose's `${VAR:-default}` with nothing set: the default. A bare `${VAR}` would start
    the fleet with an empty value, so every variable must have one."""

    def default(match: re.Match[str]) -> str:
        assert match[2] is not None, f"{match[0]} has no default"
        return match[2]

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", default, str(value))


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping, please"
    return {key: interpolate(value) for key, value in env.items()}


def taskfleet_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image", "").startswith("taskfleet:")
    }


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


def rabbitmq_conf() -> dict[str, str]:
    lines = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_rabbitmq_consumer_timeout_is_above_every_task_deadline() -> None:
    timeout_ms = int(rabbitmq_conf()["consumer_timeout"])
    longest = LONGEST_DEADLINE_S
    for service in taskfleet_services().values():
        settings = effective_settings(compose_env(service))
        deadline = settings.task_deadline_s or longest
        # A delivery is held at most for its deadline, then the shutdown grace on a stop.
        assert timeout_ms > (max(deadline, longest) + settings.shutdown_grace_s) * 1000
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_prometheus" in plugins


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, service in taskfleet_services().items():
        if name == "migrate":
            continue
        if name == "api":
            port = effective_settings(compose_env(service), ApiSettings).api_metrics_port
            assert port != parse_port(service["command"])  # not on the clients' port
        else:
            settings = effective_settings(compose_env(service))
            port = settings.metrics_port or QUEUE_BY_WORKER[WORKER_SERVICES[name]].metrics_port
        # Every replica: the service's DNS name resolves to all of them.
        assert jobs[name]["dns_sd_configs"] == [
            {"names": [name], "type": "A", "port": port, "refresh_interval": "15s"}
        ]
    assert jobs["rabbitmq"]["static_configs"] == [{"targets": ["rabbitmq:15692"]}]
    assert config["rule_files"] == ["alerts.yml"]


def parse_port(argv: list[str]) -> int:
    return int(argv[argv.index("--port") + 1])


def test_grafana_is_provisioned_with_the_dashboard_and_its_datasource() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "taskfleet.yml").read_text())
    [provider] = providers["providers"]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "taskfleet.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/taskfleet.json"
    # Panels: unique ids, inside the 24-column grid, none on top of another.
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = [
        (p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy)
        for p in panels
        for dx in range(p["gridPos"]["w"])
        for dy in range(p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))
    assert all(0 <= x < 24 for x, _ in cells)


# -- the Dockerfile --------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), " ".join(args.split())))
    return stages


def test_the_image_is_slim_unprivileged_and_healthchecked(
    parse_command: Callable[[list[str]], argparse.Namespace],
) -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    final = stages[-1]
    build_args = dict(line.split("=", 1) for line in dockerfile_args())
    assert "slim" in build_args["PYTHON_IMAGE"]
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    # The runtime stage installs tini and nothing else: no compilers, no headers, no pip.
    run = " && ".join(args for instruction, args in final if instruction == "RUN")
    assert apt_packages(run) == {"tini"}
    assert "pip " not in run
    assert apt_packages(" && ".join(a for i, a in stages[0] if i == "RUN")) >= {"build-essential"}
    [(_, user)] = [line for line in final if line[0] == "USER"]
    assert user.split(":")[0] not in {"0", "root"}
    [(_, check)] = [line for line in final if line[0] == "HEALTHCHECK"]
    assert check.endswith('CMD ["python", "-m", "taskfleet.runtime.probe"]')
    [(_, entrypoint)] = [line for line in final if line[0] == "ENTRYPOINT"]
    assert json.loads(entrypoint)[-1] == "taskfleet"
    [(_, cmd)] = [line for line in final if line[0] == "CMD"]
    parse_command(json.loads(cmd))
    env_lines = [args for instruction, args in final if instruction == "ENV"]
    env = dict(pair.split("=", 1) for line in env_lines for pair in line.split())
    assert set(env) - IMAGE_ENV <= SETTINGS
    assert env["API_HOST"] == "0.0.0.0"
    [(_, exposed)] = [line for line in final if line[0] == "EXPOSE"]
    ports = {int(port) for port in exposed.split()}
    api_ports = {ApiSettings.model_fields[f].default for f in ("api_port", "api_metrics_port")}
    assert ports == api_ports | {spec.metrics_port for spec in QUEUES.values()}


def dockerfile_args() -> list[str]:
    """The ARG lines before the first FROM (the ones FROM lines may use)."""
    head = (DEPLOY / "Dockerfile").read_text().split("\nFROM ", 1)[0]
    return [line.removeprefix("ARG ").strip() for line in head.splitlines() if line[:4] == "ARG "]


def apt_packages(script: str) -> set[str]:
    """The packages of every `apt-get install` in a shell script."""
    packages = set()
    for command in script.split("&&"):
        words = command.split()
        if words[:2] == ["apt-get", "install"]:
            packages |= {word for word in words[2:] if not word.startswith("-")}
    return packages


def test_the_build_context_keeps_what_the_image_needs() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("**") :][:7] == [
        "**", "!requirements/runtime.txt", "!pyproject.toml", "!README.md", "!shared/",
        "!services/", "!cli/",
    ]  # fmt: skip
    copied = {
        source
        for instruction, args in dockerfile_stages()[0]
        if instruction == "COPY"
        for source in args.split()[:-1]
    }
    assert copied == {
        "requirements/runtime.txt", "pyproject.toml", "README.md", "shared", "services", "cli",
    }  # fmt: skip


def test_the_image_installs_the_lock_before_the_sources() -> None:
    """The locked dependencies in a layer that a change to the sources does not rebuild, and
    nothing resolved beyond the lock: every pip install checks hashes or installs no deps."""
    steps = [(i, args) for i, args in dockerfile_stages()[0] if i in ("COPY", "RUN")]

    def first(instruction: str, *words: str) -> int:
        return next(
            n
            for n, (i, args) in enumerate(steps)
            if i == instruction and all(w in args.split() for w in words)
        )

    copy_lock = first("COPY", "requirements/runtime.txt")
    install_lock = first("RUN", "--require-hashes", "requirements/runtime.txt")
    copy_sources = min(first("COPY", source) for source in ("shared", "services", "cli"))
    install_project = first("RUN", "--no-deps", ".")
    assert copy_lock < install_lock < copy_sources < install_project
    assert [s for s in steps[:install_lock] if s[0] == "COPY"] == [steps[copy_lock]]
    commands = [command.split() for i, args in steps if i == "RUN" for command in args.split("&&")]
    pip_installs = [
        words
        for words in commands
        if [w.rsplit("/", 1)[-1] for w in words[:2]] == ["pip", "install"]
    ]
    assert len(pip_installs) == 2
    assert all({"--require-hashes", "--no-deps"} & set(words) for words in pip_installs)


@pytest.mark.parametrize(
    ("argv", "env", "port"),
    [
        (["tini", "--", "taskfleet", "api"], {}, 8080),
        (
            ["/opt/taskfleet/bin/python", "/opt/taskfleet/bin/taskfleet", "api", "--port", "9000"],
            {},
            9000,
        ),
        (["tini", "--", "taskfleet", "api", "--port=9001"], {"API_PORT": "1"}, 9001),
        (["tini", "--", "taskfleet", "api"], {"API_PORT": "8081"}, 8081),
        (["tini", "--", "taskfleet", "worker", "doc"], {}, 9103),
        (["python", "-m", "taskfleet_cli", "worker", "chat"], {"METRICS_PORT": "9200"}, 9200),
        (["tini", "--", "taskfleet", "migrate"], {}, None),
        (["tini", "--", "taskfleet", "cleanup", "--older-than", "30d"], {}, None),
    ],
)
def test_the_healthcheck_probes_the_port_of_the_service(
    argv: list[str], env: dict[str, str], port: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("API_PORT", "METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert health_port(command_of(argv), load_settings(**env)) == port


async def test_the_healthcheck_answers_for_a_live_service(tmp_path: Path) -> None:
    async def ready() -> dict[str, bool]:
        return {"ok": True}

    app = web.Application()
    add_health_routes(app, ready)
    runner = await serve(app, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    cmdline = tmp_path / "cmdline"
    try:
        cmdline.write_bytes(
            b"\0".join([b"tini", b"--", b"taskfleet", b"api", b"--port", str(port).encode(), b""])
        )
        assert await asyncio.to_thread(probe.main, cmdline) == 0
    finally:
        await runner.cleanup()
    # Nothing answers any more: unhealthy.
    assert await asyncio.to_thread(probe.main, cmdline) == 1
    # A one-shot command serves nothing and is healthy while it runs.
    cmdline.write_bytes(b"tini\0--\0taskfleet\0migrate\0")
    assert await asyncio.to_thread(probe.main, cmdline) == 0


# -- Kubernetes ------------------------------------------------------------------------------------


def k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def k8s(kind: str) -> dict[str, dict[str, Any]]:
    return {
        doc.get("metadata", {}).get("name", kind): doc
        for doc in k8s_documents()
        if doc["kind"] == kind
    }


# The part of KEDA's CustomResourceDefinitions (keda.sh/v1alpha1; github.com/kedacore/keda,
# config/crd/bases/keda.sh_scaledobjects.yaml and keda.sh_triggerauthentications.yaml) that
# these manifests use, closed to other fields so that a misspelt one fails. Trigger metadata
# values are strings there: an unquoted number is refused by the API server.
_NAME = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
_INT = {"type": "integer", "minimum": 0}
KEDA_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": _NAME,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "name": {"type": "string"},
                        },
                    },
                    "minReplicaCount": _INT,
                    "maxReplicaCount": _INT,
                    "pollingInterval": _INT,
                    "cooldownPeriod": _INT,
                    "advanced": {"type": "object"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                                "authenticationRef": _NAME,
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": _NAME,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    }
                },
            },
        },
    },
}
NOT_KUBERNETES = {"Kustomization"}


def test_k8s_manifests_are_valid() -> None:
    kinds = set()
    for doc in k8s_documents():
        kinds.add(doc["kind"])
        if doc["kind"] in NOT_KUBERNETES:
            continue
        if doc["kind"] in KEDA_SCHEMAS:
            jsonschema.validate(doc, KEDA_SCHEMAS[doc["kind"]])
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    expected = {"Namespace", "ConfigMap", "Secret", "Job", "Deployment", "Service"}
    assert kinds >= expected | {"PodDisruptionBudget", "ScaledObject", "TriggerAuthentication"}
    # And they would catch a mistake.
    deployment = next(iter(k8s("Deployment").values()))
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    scaled = json.loads(json.dumps(next(iter(k8s("ScaledObject").values()))))
    scaled["spec"]["triggers"][0]["metadata"]["value"] = 20
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, KEDA_SCHEMAS["ScaledObject"])


def test_kustomization_lists_every_manifest() -> None:
    [kustomization] = k8s("Kustomization").values()
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(owner, pod spec, container) of every Deployment and Job."""
    for kind in ("Deployment", "Job"):
        for name, doc in k8s(kind).items():
            pod = doc["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield f"{kind}/{name}", pod, container


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """What the container's process sees: its envFrom ConfigMaps and Secrets, then its env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(k8s("ConfigMap")[source["configMapRef"]["name"]]["data"])
        else:
            env.update(k8s("Secret")[source["secretRef"]["name"]]["stringData"])
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    return env


def test_k8s_sets_only_settings_with_good_values(
    parse_command: Callable[[list[str]], argparse.Namespace],
) -> None:
    for config in k8s("ConfigMap").values():
        assert set(config["data"]) <= SETTINGS
    for secret in k8s("Secret").values():
        assert set(secret["stringData"]) <= SETTINGS
    seen = set()
    for owner, pod, container in containers():
        assert "command" not in container, f"{owner}: the image's entrypoint runs taskfleet"
        args = parse_command(container["args"])
        seen.add(args.command if args.command != "worker" else f"{args.name}-worker")
        effective_settings(container_env(container)).require_jwt_secret()
        assert pod["securityContext"]["runAsNonRoot"] is True, owner
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, owner
        assert container["resources"]["requests"].keys() >= {"cpu", "memory"}, owner
        assert "memory" in container["resources"]["limits"], owner
    assert seen == {"migrate", "api", *WORKER_SERVICES}


def test_k8s_deployments_probe_and_stop_gracefully() -> None:
    deployments = k8s("Deployment")
    assert set(deployments) == {"api", *WORKER_SERVICES}
    budgets = k8s("PodDisruptionBudget")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        settings = effective_settings(container_env(container))
        assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace_s, name
        # The probes hit the port the process serves /healthz and /readyz on.
        port = health_port(container["args"], settings)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        probes = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
        if "startupProbe" in container:
            probes["startupProbe"] = "/healthz"
        for kind, path in probes.items():
            get = container[kind]["httpGet"]
            assert (get["path"], ports[get["port"]]) == (path, port), f"{name} {kind}"
        assert deployment["metadata"]["name"] == name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        # /metrics: with the health routes on a worker; on a port of its own for the API.
        api = effective_settings(container_env(container), ApiSettings)
        metrics_port = api.api_metrics_port if name == "api" else port
        assert annotations["prometheus.io/port"] == str(metrics_port), name
        assert metrics_port in ports.values(), name
        # A disruption budget that selects its pods.
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budgets[name]["spec"]["maxUnavailable"] == 1


def test_keda_scales_each_worker_on_its_queue() -> None:
    deployments, scaled = k8s("Deployment"), k8s("ScaledObject")
    auths, secrets = k8s("TriggerAuthentication"), k8s("Secret")
    assert set(scaled) == set(WORKER_SERVICES)
    for name, worker in WORKER_SERVICES.items():
        deployment = deployments[name]
        spec = scaled[name]["spec"]
        # KEDA owns the replica count: a count in the Deployment would fight it on every apply.
        assert "replicas" not in deployment["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        settings = effective_settings(container_env(container))
        [trigger] = spec["triggers"]
        assert trigger["type"] == "rabbitmq"
        queue = settings.queue(QUEUE_BY_WORKER[worker].name)
        assert trigger["metadata"] | {"value": "n"} == {
            "protocol": "amqp", "mode": "QueueLength", "queueName": queue, "value": "n",
        }  # fmt: skip
        assert int(trigger["metadata"]["value"]) >= 1
        # Its credentials: the AMQP_URL the workers use, so both read the same broker.
        [ref] = auths[trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]
        assert ref["parameter"] == "host"
        assert secrets[ref["name"]]["stringData"][ref["key"]] == settings.amqp_url


def test_the_migrate_job_runs_once_to_completion() -> None:
    [job] = k8s("Job").values()
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in {"OnFailure", "Never"}
    assert pod["containers"][0]["args"] == ["migrate"]
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
