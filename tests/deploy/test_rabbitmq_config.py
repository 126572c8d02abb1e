"""deploy/rabbitmq agrees with the code: the broker's consumer_timeout is above every task's
deadline plus the shutdown grace, and its Prometheus plugin is enabled."""

from taskfleet.core.constants import QUEUES
from tests.deploy.manifests import DEPLOY, compose_env, effective_settings, taskfleet_services

LONGEST_DEADLINE_S = max(spec.deadline_s for spec in QUEUES.values())


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
