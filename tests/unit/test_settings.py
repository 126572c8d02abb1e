"""taskfleet.core.settings and the services' own: defaults from DESIGN.md §3 and one-line
errors naming the variable."""

import pytest

from camera_worker.settings import CameraWorkerSettings
from chat_worker.settings import ChatWorkerSettings
from doc_worker.settings import DocWorkerSettings
from fleet_api.settings import ApiSettings
from taskfleet.core.errors import ConfigError
from taskfleet.core.settings import Settings, load_settings
from taskfleet_cli.configs import SERVICE_SETTINGS, settings_class
from taskfleet_cli.parser import build_parser
from tool_worker.settings import ToolWorkerSettings

EVERY_CLASS: tuple[type[Settings], ...] = (Settings, *SERVICE_SETTINGS.values())
ENV_NAMES = sorted(
    {
        str(f.validation_alias)
        for cls in EVERY_CLASS
        for f in cls.model_fields.values()
        if f.validation_alias
    }
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the host environment may leak into these tests (any letter case)."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_env_names_cover_the_design_variables() -> None:
    expected = {"AMQP_URL", "DATABASE_URL", "TASKFLEET_NAMESPACE", "TASKFLEET_JWT_SECRET"}
    expected |= {"API_HOST", "API_PORT", "METRICS_PORT", "LLM_TIMEOUT_S", "SHUTDOWN_GRACE_S"}
    assert expected <= set(ENV_NAMES)


def test_defaults_match_the_design() -> None:
    s = load_settings()
    assert s.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/taskfleet"
    assert s.namespace == ""
    assert s.jwt_secret is None
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8080)
    assert s.llm_base_url is None
    assert s.llm_timeout_s == 60
    assert s.shutdown_grace_s == 30


def test_values_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_PORT", "9090")
    monkeypatch.setenv("LLM_TIMEOUT_S", "2.5")
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@broker:5672/")
    s = load_settings()
    assert s.api_port == 9090
    assert s.llm_timeout_s == 2.5
    assert s.amqp_url == "amqp://u:p@broker:5672/"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_PORT", "abc"),
        ("API_PORT", "70000"),
        ("TASKFLEET_NAMESPACE", "has space"),
        ("TASKFLEET_NAMESPACE", "multi\nline"),
        ("LOG_FORMAT", "xml"),
        ("LLM_TIMEOUT_S", "0"),
        ("SHUTDOWN_GRACE_S", "-1"),
    ],
)
def test_bad_value_is_a_one_line_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert "\r" not in message
    assert message.startswith(f"{name}: ")


def test_bad_override_by_field_name_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^API_PORT: "):
        load_settings(api_port="not-a-port")


def test_queue_applies_the_namespace_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().queue("chat_tasks") == "chat_tasks"
    monkeypatch.setenv("TASKFLEET_NAMESPACE", "t42")
    s = load_settings()
    assert s.namespace == "t42"
    assert s.queue("chat_tasks") == "t42.chat_tasks"
    assert s.queue("taskfleet.events") == "t42.taskfleet.events"


@pytest.mark.parametrize("value", [None, ""])
def test_require_jwt_secret_raises_when_unset_or_empty(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv("TASKFLEET_JWT_SECRET", value)
    with pytest.raises(ConfigError, match=r"^TASKFLEET_JWT_SECRET: "):
        load_settings().require_jwt_secret()


def test_require_jwt_secret_returns_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cret-value-" + "x" * 19  # 32 characters: the shortest accepted
    monkeypatch.setenv("TASKFLEET_JWT_SECRET", secret)
    s = load_settings()
    assert s.require_jwt_secret() == secret
    assert secret not in repr(s)


def test_a_short_jwt_secret_is_refused_in_one_line_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKFLEET_JWT_SECRET", "s3cret-value-" + "x" * 18)  # 31 characters
    with pytest.raises(ConfigError) as refused:
        load_settings().require_jwt_secret()
    message = str(refused.value)
    assert message.startswith("TASKFLEET_JWT_SECRET: at least 32 characters, got 31")
    assert "\n" not in message
    assert "s3cret" not in message


def own_names(cls: type[Settings]) -> set[str]:
    return {
        str(f.validation_alias)
        for n, f in cls.model_fields.items()
        if n not in Settings.model_fields
    }


def test_each_variable_belongs_to_one_class() -> None:
    owned = [own_names(cls) for cls in SERVICE_SETTINGS.values()]
    kernel = {str(f.validation_alias) for f in Settings.model_fields.values()}
    assert all(names for names in owned)
    assert sum(len(names) for names in owned) == len(set().union(*owned))
    assert not kernel & set().union(*owned)


def test_every_variable_is_described() -> None:
    for cls in EVERY_CLASS:
        for name, field in cls.model_fields.items():
            assert len(field.description or "") > 10, (cls.__name__, name)


@pytest.mark.parametrize(
    ("cls", "name", "value"),
    [
        (ApiSettings, "API_METRICS_PORT", "70000"),
        (ApiSettings, "DOCUMENT_MAX_UPLOADS", "0"),
        (ChatWorkerSettings, "MAX_AGENT_STEPS", "0"),
        (ToolWorkerSettings, "SMTP_URL", "http://mail"),
        (DocWorkerSettings, "DOC_PARSE_MEMORY_MB", "64"),
        (CameraWorkerSettings, "CAMERA_SCHEDULER_TICK_S", "1"),
    ],
)
def test_a_bad_service_value_stops_only_that_service_in_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, cls: type[Settings], name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        cls.load()
    assert str(info.value).startswith(f"{name}: ")
    assert "\n" not in str(info.value)
    load_settings()  # the kernel's commands do not read it


def test_service_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ApiSettings.load().api_metrics_port == 9100
    assert ChatWorkerSettings.load().max_agent_steps == 5
    assert DocWorkerSettings.load().doc_parse_memory_mb == 512
    assert CameraWorkerSettings.load().camera_scheduler_tick_s == 0.25
    monkeypatch.setenv("HTTP_GET_ALLOWED_HOSTS", " Example.com, api.example.org ,")
    monkeypatch.setenv("API_PORT", "9090")
    tool = ToolWorkerSettings.load()
    assert tool.http_get_allowed_hosts == ("example.com", "api.example.org")
    assert tool.api_port == 9090  # the kernel's variables too


def test_of_keeps_the_base_values_and_reads_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_CONTENT_CHARS", "77")
    base = load_settings(api_port=1234, TASKFLEET_NAMESPACE="ns1")
    api = ApiSettings.of(base, document_max_uploads=2)
    assert (api.api_port, api.namespace) == (1234, "ns1")
    assert (api.max_content_chars, api.document_max_uploads) == (77, 2)
    assert ApiSettings.of(api) is api
    with pytest.raises(ConfigError, match=r"^DOCUMENT_MAX_UPLOADS: "):
        ApiSettings.of(base, document_max_uploads=0)


@pytest.mark.parametrize(
    ("argv", "cls"),
    [
        (["api"], ApiSettings),
        (["worker", "chat"], ChatWorkerSettings),
        (["worker", "tool"], ToolWorkerSettings),
        (["worker", "doc"], DocWorkerSettings),
        (["worker", "camera"], CameraWorkerSettings),
        (["migrate"], Settings),
        (["up"], Settings),
        (["cleanup"], Settings),
    ],
)
def test_the_command_line_loads_each_commands_class(argv: list[str], cls: type[Settings]) -> None:
    assert settings_class(build_parser().parse_args(argv)) is cls


def test_the_direct_database_url_is_the_database_url_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@pooler:6432/taskfleet")
    assert load_settings().direct_database_url == "postgresql://u@pooler:6432/taskfleet"
    assert load_settings().database_statement_cache == 100
    monkeypatch.setenv("DATABASE_DIRECT_URL", "postgresql://u@primary:5432/taskfleet")
    monkeypatch.setenv("DATABASE_STATEMENT_CACHE", "0")
    s = load_settings()
    assert s.direct_database_url == "postgresql://u@primary:5432/taskfleet"
    assert s.database_statement_cache == 0
