"""deploy/k8s, without a cluster: the manifests are valid (kubernetes-validate; KEDA's resources
against the part of KEDA's CRD schema they use), the kustomization lists them all, containers
run real `taskfleet` commands with good settings, Deployments probe the right port and stop
gracefully, and KEDA scales each worker on its queue (test_kubernetes_rollout.py: what a
rollout needs)."""

import argparse
import json
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fleet_api.settings import ApiSettings
from taskfleet.core.constants import LEVELS, QUEUE_BY_WORKER, level_queue
from taskfleet.runtime.probe import health_port
from tests.deploy.manifests import DEPLOY, SETTINGS, WORKER_SERVICES, effective_settings

K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"


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
                    "fallback": {
                        "type": "object",
                        "required": ["failureThreshold", "replicas"],
                        "additionalProperties": False,
                        "properties": {"failureThreshold": _INT, "replicas": _INT},
                    },
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
    expected = {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "NetworkPolicy"}
    assert kinds >= expected | {"PodDisruptionBudget", "ScaledObject", "TriggerAuthentication"}
    assert "HorizontalPodAutoscaler" in kinds
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


def test_kustomization_lists_every_manifest_but_the_secrets_example() -> None:
    [kustomization] = k8s("Kustomization").values()
    listed = set(kustomization["resources"])
    examples = {p.name for p in K8S.glob("*.example.yaml")}
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"} - examples
    # The Secret is created once by the operator: no `apply -k` overwrites it.
    for name in listed:
        assert all(doc["kind"] != "Secret" for doc in yaml.safe_load_all((K8S / name).read_text()))
    assert examples == {"secret.example.yaml"}


def containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(owner, pod spec, container) of every Deployment's containers and init containers."""
    for name, doc in k8s("Deployment").items():
        pod = doc["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            yield f"Deployment/{name}", pod, container


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
        # One trigger a priority level, scaled on their sum (docs/priorities.md).
        triggers = {t["name"]: t for t in spec["triggers"]}
        assert list(triggers) == [level.value for level in LEVELS]
        modifiers = spec["advanced"]["scalingModifiers"]
        assert modifiers["formula"] == " + ".join(triggers)
        assert int(modifiers["target"]) >= 1
        for level, trigger in triggers.items():
            assert trigger["type"] == "rabbitmq"
            queue = settings.queue(level_queue(QUEUE_BY_WORKER[worker].name, level))
            assert trigger["metadata"] | {"value": "n"} == {
                "protocol": "amqp", "mode": "QueueLength", "queueName": queue, "value": "n",
            }  # fmt: skip
            assert trigger["metadata"]["value"] == modifiers["target"]
            # Its credentials: the AMQP_URL the workers use, so both read the same broker.
            [ref] = auths[trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]
            assert ref["parameter"] == "host"
            assert secrets[ref["name"]]["stringData"][ref["key"]] == settings.amqp_url
