"""deploy/docker-compose.cluster.yml, without a Docker engine: a valid overlay whose three
RabbitMQ nodes name each other, share one cookie, and which every taskfleet service of the
base file reaches through an AMQP_URL listing the three."""

import json
import re

import jsonschema
import yaml

from taskfleet.core.settings import Settings
from tests.deploy.manifests import DEPLOY, HERE, compose, compose_env, taskfleet_services

OVERLAY = DEPLOY / "docker-compose.cluster.yml"
NODES = {"rabbitmq", "rabbitmq2", "rabbitmq3"}


def overlay() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(OVERLAY.read_text())
    return data


def test_the_overlay_follows_the_compose_specification() -> None:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(overlay())]
    assert errors == []


def test_the_three_nodes_name_each_other_and_share_one_cookie() -> None:
    services = overlay()["services"]
    assert isinstance(services, dict)
    assert set(services) >= NODES
    conf = (DEPLOY / "rabbitmq" / "cluster.conf").read_text()
    named = set(
        re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$", conf, re.M)
    )
    assert named == NODES
    for name in NODES:
        node = services[name]
        assert "RABBITMQ_ERLANG_COOKIE:?" in node["environment"]["RABBITMQ_ERLANG_COOKIE"]
        assert any("cluster.conf:/etc/rabbitmq/conf.d/" in v for v in node["volumes"])
        assert node.get("hostname", name) == name  # the node name rabbit@<hostname>
    assert "RABBITMQ_ERLANG_COOKIE=" in (DEPLOY / ".env.example").read_text()


def test_every_taskfleet_service_lists_the_three_nodes() -> None:
    services = overlay()["services"]
    assert isinstance(services, dict)
    assert set(taskfleet_services()) <= set(services)
    for name in taskfleet_services():
        url = compose_env(services[name])["AMQP_URL"]
        hosts = {
            a.split("@")[1].split(":")[0].split("/")[0]
            for a in Settings.load(AMQP_URL=url).amqp_urls
        }
        assert hosts == NODES, name
    # The base file's broker is the first node: its volume and config stay as they are.
    assert "rabbitmq" in compose()["services"]
