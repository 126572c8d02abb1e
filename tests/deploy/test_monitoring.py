"""deploy/prometheus and deploy/grafana agree with the services: Prometheus scrapes every replica
of every service on the port it serves /metrics on, and Grafana is provisioned with the
dashboard and its datasource, the dashboard's panels laid out on its grid."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from fleet_api.settings import ApiSettings
from taskfleet.core.constants import QUEUE_BY_WORKER
from tests.deploy.manifests import (
    DEPLOY,
    WORKER_SERVICES,
    compose,
    compose_env,
    effective_settings,
    taskfleet_services,
)


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
    # Alerts go to the compose stack's Alertmanager, on the port it listens on.
    [manager] = config["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": ["alertmanager:9093"]}]


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
    # Importable into another Grafana: every query names the datasource variable, whose
    # default here is the provisioned datasource; job and namespace narrow every panel.
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {"${datasource}"}
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["current"]["value"] == source["uid"]
    assert {"job", "namespace", "queue"} <= set(variables)
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for selector in re.findall(r"taskfleet_\w+\{[^}]*\}|taskfleet_\w+", target["expr"]):
                assert 'job=~"$job"' in selector, (panel["title"], selector)
                assert 'namespace=~"$namespace"' in selector, (panel["title"], selector)
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


# `make test` puts amtool beside the virtualenv's python (deploy/tools/fetch-promtool).
_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def test_alertmanager_runs_in_compose_with_a_configuration_amtool_accepts() -> None:
    service = compose()["services"]["alertmanager"]
    mounts = dict(volume.split(":")[:2] for volume in service["volumes"])
    assert mounts["./alertmanager"] == "/etc/alertmanager"
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in service["command"]
    assert service["ports"] == ["127.0.0.1:9093:9093"]
    path = DEPLOY / "alertmanager" / "alertmanager.yml"
    config = yaml.safe_load(path.read_text())
    # The example receiver gets every alert, resolved ones too, each with its runbook_url.
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers[config["route"]["receiver"]]["webhook_configs"][0]["send_resolved"]
    amtool = shutil.which("amtool", path=_PATH)
    assert amtool is not None, "amtool is missing: deploy/tools/fetch-promtool .venv/bin"
    done = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr
