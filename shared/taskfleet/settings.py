"""Configuration from the environment (DESIGN.md §3). Constructed once per process, passed down."""

from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskfleet.errors import ConfigError


class Settings(BaseSettings):
    """Every setting of every process. No file is needed: defaults run a local fleet."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    amqp_url: str = Field("amqp://guest:guest@127.0.0.1:5672/", validation_alias="AMQP_URL")
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/taskfleet", validation_alias="DATABASE_URL"
    )
    namespace: str = Field(
        "", validation_alias="TASKFLEET_NAMESPACE", pattern=r"^[A-Za-z0-9_\-]*$", max_length=64
    )
    jwt_secret: SecretStr | None = Field(None, validation_alias="TASKFLEET_JWT_SECRET")
    api_host: str = Field("127.0.0.1", validation_alias="API_HOST")
    api_port: int = Field(8080, ge=0, le=65535, validation_alias="API_PORT")
    metrics_port: int | None = Field(None, ge=0, le=65535, validation_alias="METRICS_PORT")

    llm_base_url: str | None = Field(None, validation_alias="LLM_BASE_URL")
    llm_api_key: SecretStr | None = Field(None, validation_alias="LLM_API_KEY")
    llm_model: str | None = Field(None, validation_alias="LLM_MODEL")
    llm_timeout_s: float = Field(60.0, gt=0, validation_alias="LLM_TIMEOUT_S")
    # Makes the offline `scripted` provider slow, for demos and crash tests.
    scripted_delay_ms: int = Field(0, ge=0, validation_alias="SCRIPTED_DELAY_MS")

    log_format: Literal["json", "console"] = Field("json", validation_alias="LOG_FORMAT")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="LOG_LEVEL"
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    shutdown_grace_s: float = Field(30.0, ge=0, validation_alias="SHUTDOWN_GRACE_S")
    publish_timeout_s: float = Field(10.0, gt=0, validation_alias="PUBLISH_TIMEOUT_S")
    amqp_heartbeat_s: int = Field(10, ge=0, validation_alias="AMQP_HEARTBEAT_S")
    db_pool_size: int = Field(10, ge=1, validation_alias="DB_POOL_SIZE")
    db_timeout_s: float = Field(10.0, gt=0, validation_alias="DB_TIMEOUT_S")

    # The outbox relay leaves a fresh row alone this long: its writer is publishing it itself.
    outbox_grace_s: float = Field(5.0, ge=0, validation_alias="OUTBOX_GRACE_S")
    outbox_poll_s: float = Field(1.0, gt=0, validation_alias="OUTBOX_POLL_S")

    # Overrides of the per-queue defaults in constants.QUEUES (unset: the queue's own).
    max_attempts: int | None = Field(None, ge=1, le=100, validation_alias="MAX_ATTEMPTS")
    retry_base_s: float | None = Field(None, gt=0, validation_alias="RETRY_BASE_S")
    retry_max_s: float | None = Field(None, gt=0, validation_alias="RETRY_MAX_S")
    task_deadline_s: float | None = Field(None, gt=0, validation_alias="TASK_DEADLINE_S")

    user_concurrency: int = Field(4, ge=1, validation_alias="USER_CONCURRENCY")
    throttle_delay_s: float = Field(1.0, gt=0, validation_alias="THROTTLE_DELAY_S")
    max_content_chars: int = Field(32_000, ge=1, validation_alias="MAX_CONTENT_CHARS")

    def queue(self, name: str) -> str:
        """The broker name of a queue or exchange, after the namespace prefix."""
        return f"{self.namespace}.{name}" if self.namespace else name

    def require_jwt_secret(self) -> str:
        if self.jwt_secret is None or not self.jwt_secret.get_secret_value():
            raise ConfigError("TASKFLEET_JWT_SECRET: required (taskfleet up generates one)")
        return self.jwt_secret.get_secret_value()


def load_settings(**overrides: object) -> Settings:
    """Read the environment; a bad value raises ConfigError with a one-line message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "settings"
        alias = (
            Settings.model_fields[field].validation_alias
            if field in Settings.model_fields
            else None
        )
        raise ConfigError(f"{alias or field}: {err['msg']} (got {err.get('input')!r})") from None
