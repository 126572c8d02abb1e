"""Configuration from the environment (DESIGN.md §3). Constructed once per process, passed down.

`Settings` holds what the kernel reads, and so every process; a service's own variables are
in a subclass in its package (`fleet_api.settings.ApiSettings`, ...), which the command line
loads for that service. Every field's description is its documentation: docs/configuration.md
is generated from them (`make settings-doc`).
"""

from typing import Literal, Self

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from taskfleet.core.addresses import AmqpUrl, amqp_addresses
from taskfleet.core.database_settings import DatabaseSettings
from taskfleet.core.durations import parse_duration as parse_duration  # its old home
from taskfleet.core.errors import ConfigError
from taskfleet.core.retention_settings import RetentionSettings

JWT_SECRET_MIN_CHARS = 32
_UNSHOWN = {"AMQP_URL", "DATABASE_URL", "TASKFLEET_JWT_SECRET", "ENCRYPTION_KEYS"}


class Settings(DatabaseSettings, RetentionSettings):
    """Every setting the kernel reads. No file is needed: defaults run a local fleet."""

    model_config = SettingsConfigDict(
        populate_by_name=True, extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    amqp_url: AmqpUrl = Field("amqp://guest:guest@127.0.0.1:5672/", validation_alias="AMQP_URL")
    """The RabbitMQ broker; for a cluster, its nodes: comma-separated URLs, or the hosts of one URL
    (`amqp://u:p@a,b,c:5672/`). A process connects to the first that answers, and to the next
    when its node goes away."""

    amqp_quorum_size: int | None = Field(None, ge=1, le=9, validation_alias="AMQP_QUORUM_SIZE")
    """Replicas of each quorum queue (`x-quorum-initial-group-size`; unset: one per node), only
    when first declared: RabbitMQ refuses another value for an existing queue (operations.md)."""

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/taskfleet", validation_alias="DATABASE_URL"
    )
    """The PostgreSQL database, created by `migrate` if missing; with a standby, both hosts and
    `target_session_attrs=read-write` (`postgresql://u@a,b/taskfleet?target_session_attrs=...`).
    Its login role must be able to `SET ROLE` to `taskfleet_service`, `taskfleet_app` and
    `taskfleet_admin` (the migration grants them); not a superuser in production (security.md)."""

    namespace: str = Field(
        "", validation_alias="TASKFLEET_NAMESPACE", pattern=r"^[A-Za-z0-9_\-]*$", max_length=64
    )
    """Prefix of every queue and exchange name (`ns.chat_tasks`): several fleets on one broker."""

    jwt_secret: SecretStr | None = Field(None, validation_alias="TASKFLEET_JWT_SECRET")
    """The HS256 key that signs tokens: required by `api` and `token`, at least 32 characters (a
    process refuses a shorter one at start); `taskfleet up` generates one per run."""

    jwt_issuer: str = Field("taskfleet", min_length=1, validation_alias="JWT_ISSUER")
    """The issuer (`iss`) tokens must name (`exp`, `sub` and `jti` are required too); a backend that
    mints its own tokens sets it."""

    jwt_audience: str = Field("taskfleet-api", min_length=1, validation_alias="JWT_AUDIENCE")
    """The audience (`aud`) tokens must name; a backend that mints its own tokens sets it."""

    environment: Literal["development", "production"] = Field(
        "development", validation_alias="TASKFLEET_ENV"
    )
    """`production` refuses to start without ENCRYPTION_KEYS; otherwise a public development key is
    used, with a warning (docs/security.md)."""

    encryption_keys: SecretStr | None = Field(None, validation_alias="ENCRYPTION_KEYS")
    """Keys that seal sensitive fields at rest (tool arguments and results, the agent's checkpoint,
    memory facts): `kid:key,kid:key`, key = urlsafe base64 of 32 bytes (`taskfleet keygen k1`). The
    first seals, the others only open. Rotate in two rolling restarts, the new key second (it opens)
    then first (it seals), then `taskfleet rotate-key`, then drop the old key (docs/security.md).
    Unset outside production: a public development key, with a `development_encryption_key` warning
    at start."""

    api_host: str = Field("127.0.0.1", validation_alias="API_HOST")
    """The API's address: where it listens, and where `taskfleet submit` and `bench` find it."""

    api_port: int = Field(8080, ge=0, le=65535, validation_alias="API_PORT")
    """The API's port for clients."""

    metrics_port: int | None = Field(None, ge=0, le=65535, validation_alias="METRICS_PORT")
    """A worker's /healthz, /readyz and /metrics port (0: any free port). Unset: its queue's own
    (chat 9101, tool 9102, doc 9103, camera 9104)."""

    llm_base_url: str | None = Field(None, validation_alias="LLM_BASE_URL")
    """An OpenAI-compatible endpoint (`http://host:8000/v1`); unset: the offline `scripted`
    model."""

    llm_api_key: SecretStr | None = Field(None, validation_alias="LLM_API_KEY")
    """The LLM endpoint's API key."""

    llm_model: str | None = Field(None, validation_alias="LLM_MODEL")
    """The model name; required with LLM_BASE_URL."""

    llm_timeout_s: float = Field(60.0, gt=0, validation_alias="LLM_TIMEOUT_S")
    """Timeout of one LLM request, in seconds."""

    scripted_delay_ms: int = Field(0, ge=0, validation_alias="SCRIPTED_DELAY_MS")
    """Makes the offline `scripted` model slow: demos and crash tests."""

    llm_max_attempts: int = Field(3, ge=1, le=10, validation_alias="LLM_MAX_ATTEMPTS")
    """HTTP attempts per LLM call (429, 5xx, connection errors, a stall before the first token)."""

    llm_retry_max_wait_s: float = Field(20.0, ge=0, validation_alias="LLM_RETRY_MAX_WAIT_S")
    """The longest wait between two LLM attempts; a longer Retry-After becomes a task retry, so that
    no worker sleeps through it."""

    log_format: Literal["auto", "json", "console"] = Field("auto", validation_alias="LOG_FORMAT")
    """`auto`: console for humans on a terminal, JSON lines anywhere else; or `json`, `console`."""

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="LOG_LEVEL"
    )
    """`debug`, `info`, `warning` or `error`. The libraries' own lines (aiormq, aio_pika, aiohttp,
    asyncpg, Python warnings) pass from WARNING up, and all of them at `debug`."""

    shutdown_grace_s: float = Field(30.0, ge=0, validation_alias="SHUTDOWN_GRACE_S")
    """At SIGTERM, in-flight tasks (and the API's requests) get this long, then are handed back."""

    memory_soft_limit_mb: int = Field(1024, ge=0, validation_alias="MEMORY_SOFT_LIMIT_MB")
    """A worker over this RSS takes no deliveries until it is under 90 % of it (0: off)."""

    memory_hard_limit_mb: int = Field(1536, ge=0, validation_alias="MEMORY_HARD_LIMIT_MB")
    """A worker over this RSS stops gracefully and exits 75 to be started afresh (0: off). Must be
    above MEMORY_SOFT_LIMIT_MB."""

    memory_check_s: float = Field(1.0, gt=0, le=60, validation_alias="MEMORY_CHECK_S")
    """How often the memory guard measures."""

    submit_rate_per_min: int = Field(600, ge=1, validation_alias="SUBMIT_RATE_PER_MIN")
    """Submissions (chat, documents, frames) per user per minute, counted in PostgreSQL across API
    replicas: over it, 429 with Retry-After and nothing stored."""

    max_queued_per_user: int = Field(1000, ge=1, validation_alias="MAX_QUEUED_PER_USER")
    """Unfinished tasks a user may have at once, counted across API replicas: over it, 429 with
    Retry-After and nothing stored."""

    worker_heartbeat_s: float = Field(5.0, gt=0, le=300, validation_alias="WORKER_HEARTBEAT_S")
    """How often every worker writes its row in the registry (GET /api/admin/workers)."""

    publish_timeout_s: float = Field(10.0, gt=0, validation_alias="PUBLISH_TIMEOUT_S")
    """Every publish waits at most this for its confirm, and a request at most this for room in the
    API's publisher (then the relay publishes its task)."""

    amqp_heartbeat_s: int = Field(5, ge=0, validation_alias="AMQP_HEARTBEAT_S")
    """The AMQP connection's heartbeat, in seconds: a dead link is noticed in about 3 heartbeats."""

    db_pool_size: int = Field(10, ge=1, validation_alias="DB_POOL_SIZE")
    """Connections in a process's database pool; a worker's is at least its slots + 4, counting
    32 slots at most (the rest share them)."""

    db_timeout_s: float = Field(10.0, gt=0, validation_alias="DB_TIMEOUT_S")
    """Timeout of a database connect or statement."""

    outbox_grace_s: float = Field(5.0, ge=0, validation_alias="OUTBOX_GRACE_S")
    """The outbox relay leaves a fresh row alone this long: its writer is publishing it itself."""

    outbox_poll_s: float = Field(1.0, gt=0, validation_alias="OUTBOX_POLL_S")
    """The outbox relay's longest sleep between two looks for due rows."""

    worker_concurrency: int | None = Field(
        None, ge=1, le=1024, validation_alias="WORKER_CONCURRENCY"
    )
    """A worker's slots (tasks at once), fixed, when `--concurrency` is not given; unset: its
    queue's own, adapting to the work (chat 64 to 256, tool 8 to 64; doc 2 and camera 4 fixed)."""

    max_attempts: int | None = Field(None, ge=1, le=100, validation_alias="MAX_ATTEMPTS")
    """Attempts of a task before it fails; unset: its queue's own (chat: 5)."""

    retry_base_s: float | None = Field(None, gt=0, validation_alias="RETRY_BASE_S")
    """The first retry's delay, doubled each attempt; unset: the queue's own (chat: 1 s)."""

    retry_max_s: float | None = Field(None, gt=0, validation_alias="RETRY_MAX_S")
    """The longest retry delay; unset: the queue's own (chat: 60 s)."""

    task_deadline_s: float | None = Field(None, gt=0, validation_alias="TASK_DEADLINE_S")
    """How long one attempt may run; unset: the queue's own (chat: 300 s)."""

    reconcile_interval_s: float = Field(5.0, ge=0, validation_alias="RECONCILE_INTERVAL_S")
    """The reconciler's pass, in one process of the fleet, every this many seconds; 0: off
    (docs/design-notes.md)."""

    reconcile_after_s: float = Field(60.0, gt=0, validation_alias="RECONCILE_AFTER_S")
    """A queued task whose message was lost, or a waiting task whose children all ended, is repaired
    once it has not changed for this long."""

    task_grace_s: float = Field(60.0, ge=0, validation_alias="TASK_GRACE_S")
    """A running task this long past its deadline is handed over by the reconciler (at once when its
    holder is gone)."""

    user_concurrency: int = Field(4, ge=1, validation_alias="USER_CONCURRENCY")
    """Running tasks per user per type; more are put back, not counted as attempts."""

    throttle_delay_s: float = Field(1.0, gt=0, validation_alias="THROTTLE_DELAY_S")
    """How long a task put back over its user's concurrency waits before it is tried again."""

    faults: str = Field("", validation_alias="TASKFLEET_FAULTS")
    """Crash points of the fault-injection suite (taskfleet.core.faults): tests only; empty in
    production."""

    camera_max_frame_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, validation_alias="CAMERA_MAX_FRAME_BYTES"
    )
    """The largest camera frame, uploaded or captured (docs/cameras.md)."""

    @model_validator(mode="after")
    def _memory_limits(self) -> Self:
        soft, hard = self.memory_soft_limit_mb, self.memory_hard_limit_mb
        if soft and hard and hard <= soft:
            raise ValueError(
                f"MEMORY_HARD_LIMIT_MB ({hard}) must be above MEMORY_SOFT_LIMIT_MB ({soft})"
            )
        return self

    @property
    def amqp_urls(self) -> list[str]:
        """Each broker node's URL, in the order AMQP_URL gives them."""
        return amqp_addresses(self.amqp_url)

    @field_validator("log_level", "log_format", "environment", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("faults")
    @classmethod
    def _valid_faults(cls, value: str) -> str:
        from taskfleet.core.faults import Faults

        Faults.parse(value)
        return value

    @classmethod
    def load(cls, **overrides: object) -> Self:
        """Read the environment; a bad value raises ConfigError with a one-line message."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else "settings"
            alias = cls.model_fields[field].validation_alias if field in cls.model_fields else None
            # A URL's or a key's value is never shown: it may hold a password.
            got = "" if (alias or field) in _UNSHOWN else f" (got {err.get('input')!r})"
            message = f"{alias or field}: {err['msg']}{got}"
            raise ConfigError(message) from None

    @classmethod
    def of(cls, base: "Settings", **overrides: object) -> Self:
        """`base` as this class: a service's settings over the kernel's of a test, say.

        `base` itself when it already is one; else its values and `overrides`, with the
        fields it lacks read from the environment."""
        if isinstance(base, cls) and not overrides:
            return base
        return cls.load(**{**base.model_dump(), **overrides})

    def queue(self, name: str) -> str:
        """The broker name of a queue or exchange, after the namespace prefix."""
        return f"{self.namespace}.{name}" if self.namespace else name

    def require_jwt_secret(self) -> str:
        """The secret that signs tokens; ConfigError (one line, never the value) if it is
        unset or shorter than JWT_SECRET_MIN_CHARS: an HS256 key anyone can guess offline from
        one token signs tokens of every scope."""
        secret = self.jwt_secret.get_secret_value() if self.jwt_secret is not None else ""
        if not secret:
            raise ConfigError("TASKFLEET_JWT_SECRET: required (taskfleet up generates one)")
        if len(secret) < JWT_SECRET_MIN_CHARS:
            raise ConfigError(
                f"TASKFLEET_JWT_SECRET: at least {JWT_SECRET_MIN_CHARS} characters, got"
                f" {len(secret)} (make one: python -c"
                " 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return secret


def load_settings(**overrides: object) -> Settings:
    """The kernel's settings from the environment (Settings.load)."""
    return Settings.load(**overrides)
