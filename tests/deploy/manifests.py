"""What the checks of deploy/ share: where its files are, every taskfleet setting a container
may set, the worker services, the settings a container runs with, and the compose file read
with Compose's interpolation."""

import re
from pathlib import Path
from typing import Any, TypeVar, overload

import yaml

from taskfleet.core.constants import QUEUE_BY_WORKER
from taskfleet.core.settings import Settings
from taskfleet_cli.configs import SERVICE_SETTINGS

HERE = Path(__file__).parent
DEPLOY = HERE.parents[1] / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"

# The kernel's and every service's: a container may set any of them.
EVERY_CLASS: tuple[type[Settings], ...] = (Settings, *SERVICE_SETTINGS.values())
SETTINGS = frozenset(
    str(field.validation_alias)
    for cls in EVERY_CLASS
    for field in cls.model_fields.values()
    if field.validation_alias is not None
)
WORKER_SERVICES = {f"{name}-worker": name for name in QUEUE_BY_WORKER}
S = TypeVar("S", bound=Settings)


@overload
def effective_settings(env: dict[str, str]) -> Settings: ...
@overload
def effective_settings(env: dict[str, str], cls: type[S]) -> S: ...
def effective_settings(env: dict[str, str], cls: type[Settings] = Settings) -> Settings:
    """The settings (`cls`) a container with `env` runs with (only its own variables); every
    value is checked by each class that reads it."""
    unknown = set(env) - SETTINGS
    assert not unknown, f"not taskfleet settings: {sorted(unknown)}"
    for every in EVERY_CLASS:
        every.load(**env)
    return cls.load(**env)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


# What an operator must set (compose's `${VAR:?message}` refuses to start without it), as
# deploy/.env would give it.
REQUIRED = {"TASKFLEET_JWT_SECRET": "a-secret-an-operator-made-of-48-random-characters"}


def interpolate(value: Any, given: dict[str, str] = REQUIRED) -> str:
    """Compose's `${VAR:-default}` with nothing set: the default; `${VAR:?message}`: the
    value `given`, else an error naming it, as compose stops. A bare `${VAR}` would start the
    fleet with an empty value, so every variable must have a default or be required."""

    def default(match: re.Match[str]) -> str:
        name, kind, rest = match[1], match[2], match[3]
        if kind == ":?":
            if not given.get(name):
                raise LookupError(f"{name}: {rest}")
            return given[name]
        assert kind == ":-", f"{match[0]} has no default"
        return rest

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", default, str(value))


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
