"""What deploy/k8s needs to survive a rollout: every pod migrates the schema before it starts
(no Job to delete between upgrades), the API pauses before its SIGTERM and is scaled by an
autoscaler, KEDA holds fallback replicas while it cannot read a queue, and the network is
denied by default with the egress each service needs (camera workers only to the listed
camera networks)."""

from typing import Any

from fleet_api.settings import ApiSettings
from tests.deploy.manifests import WORKER_SERVICES, effective_settings
from tests.deploy.test_kubernetes import container_env, k8s


def pod_of(deployment: str) -> dict[str, Any]:
    pod: dict[str, Any] = k8s("Deployment")[deployment]["spec"]["template"]["spec"]
    return pod


def test_every_pod_migrates_the_schema_before_it_starts() -> None:
    assert k8s("Job") == {}  # nothing to delete by hand before the next upgrade
    for name in ("api", *WORKER_SERVICES):
        pod = pod_of(name)
        [init] = pod["initContainers"]
        [container] = pod["containers"]
        assert init["args"] == ["migrate"], name
        assert (init["image"], init["envFrom"]) == (container["image"], container["envFrom"])


def test_the_api_pauses_before_sigterm_and_is_autoscaled() -> None:
    pod = pod_of("api")
    [container] = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    settings = effective_settings(container_env(container), ApiSettings)
    # The pause and the stop's own grace both fit before the kubelet's SIGKILL.
    assert pod["terminationGracePeriodSeconds"] > float(command[1]) + settings.shutdown_grace_s
    # The autoscaler owns the count: a count in the Deployment would fight it on every apply.
    assert "replicas" not in k8s("Deployment")["api"]["spec"]
    [hpa] = k8s("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "api",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # Utilisation is of the request: the container must request CPU.
    assert container["resources"]["requests"]["cpu"]


def test_keda_holds_fallback_replicas_while_it_cannot_read_a_queue() -> None:
    for name, scaled in k8s("ScaledObject").items():
        spec = scaled["spec"]
        fallback = spec["fallback"]
        assert fallback["failureThreshold"] >= 1, name
        assert spec["minReplicaCount"] <= fallback["replicas"] <= spec["maxReplicaCount"], name


def policies_for(labels: dict[str, str]) -> list[dict[str, Any]]:
    """The NetworkPolicies that select a pod with these labels."""
    return [
        policy
        for policy in k8s("NetworkPolicy").values()
        if policy["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
    ]


def egress_ports(labels: dict[str, str]) -> set[int | str]:
    """The ports a pod may reach at any address (rules without `to`)."""
    return {
        port["port"]
        for policy in policies_for(labels)
        for rule in policy["spec"].get("egress", [])
        if "to" not in rule
        for port in rule.get("ports", [])
    }


def test_the_network_is_denied_by_default_with_the_egress_each_service_needs() -> None:
    deny = k8s("NetworkPolicy")["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    needs: dict[str, set[int | str]] = {
        "api": set(), "chat-worker": {443}, "tool-worker": {80, 443, 25, 465, 587},
        "doc-worker": set(), "camera-worker": set(),
    }  # fmt: skip
    for name, extra in needs.items():
        labels = k8s("Deployment")[name]["spec"]["template"]["metadata"]["labels"]
        # PostgreSQL and RabbitMQ for all; nothing open beyond what the service needs.
        assert egress_ports(labels) == {5432, 5672} | extra, name
        # Prometheus reaches the `metrics` port the pod names.
        [container] = pod_of(name)["containers"]
        assert "metrics" in {p["name"] for p in container["ports"]}, name
        ingress = [
            port["port"]
            for policy in policies_for(labels)
            for rule in policy["spec"].get("ingress", [])
            for port in rule.get("ports", [])
        ]
        assert "metrics" in ingress, name
        assert ("http" in ingress) == (name == "api"), name
    # The cameras: only the networks the operator lists, and the pod reaches nothing else.
    labels = {"app.kubernetes.io/name": "camera-worker"}
    targets = [
        peer
        for policy in policies_for(labels)
        if policy["spec"]["podSelector"]
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
    ]
    assert targets
    assert all(set(peer) == {"ipBlock"} for peer in targets)
