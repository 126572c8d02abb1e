"""Configuration from the environment (DESIGN.md §3). Constructed once per process, passed down."""

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from taskfleet.core.errors import ConfigError

JWT_SECRET_MIN_CHARS = 32


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
    # Tokens must name this issuer and audience (`iss`, `aud`).
    jwt_issuer: str = Field("taskfleet", min_length=1, validation_alias="JWT_ISSUER")
    jwt_audience: str = Field("taskfleet-api", min_length=1, validation_alias="JWT_AUDIENCE")
    # `production` refuses to start without ENCRYPTION_KEYS; anything else falls back to a
    # public development key, with a warning (docs/security.md).
    environment: Literal["development", "production"] = Field(
        "development", validation_alias="TASKFLEET_ENV"
    )
    # Keys that seal sensitive fields at rest, `kid:key,kid:key` (key: urlsafe base64 of 32
    # bytes, `taskfleet keygen`). The first seals; the others only open, until `taskfleet
    # rotate-key` has re-sealed their values (taskfleet/security/crypto.py, docs/security.md).
    encryption_keys: SecretStr | None = Field(None, validation_alias="ENCRYPTION_KEYS")
    api_host: str = Field("127.0.0.1", validation_alias="API_HOST")
    api_port: int = Field(8080, ge=0, le=65535, validation_alias="API_PORT")
    metrics_port: int | None = Field(None, ge=0, le=65535, validation_alias="METRICS_PORT")
    # The API's /metrics, on a port of its own: metrics are for Prometheus, not for clients.
    api_metrics_port: int = Field(9100, ge=0, le=65535, validation_alias="API_METRICS_PORT")

    llm_base_url: str | None = Field(None, validation_alias="LLM_BASE_URL")
    llm_api_key: SecretStr | None = Field(None, validation_alias="LLM_API_KEY")
    llm_model: str | None = Field(None, validation_alias="LLM_MODEL")
    llm_timeout_s: float = Field(60.0, gt=0, validation_alias="LLM_TIMEOUT_S")
    # Makes the offline `scripted` provider slow, for demos and crash tests.
    scripted_delay_ms: int = Field(0, ge=0, validation_alias="SCRIPTED_DELAY_MS")

    # auto: console on a terminal, JSON anywhere else (taskfleet/core/logging.py).
    log_format: Literal["auto", "json", "console"] = Field("auto", validation_alias="LOG_FORMAT")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="LOG_LEVEL"
    )

    @model_validator(mode="after")
    def _memory_limits(self) -> "Settings":
        soft, hard = self.memory_soft_limit_mb, self.memory_hard_limit_mb
        if soft and hard and hard <= soft:
            raise ValueError(
                f"MEMORY_HARD_LIMIT_MB ({hard}) must be above MEMORY_SOFT_LIMIT_MB ({soft})"
            )
        return self

    @field_validator("log_level", "log_format", "environment", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    shutdown_grace_s: float = Field(30.0, ge=0, validation_alias="SHUTDOWN_GRACE_S")
    # The memory guard of a worker (taskfleet/runtime/memguard.py); 0 turns a limit off.
    memory_soft_limit_mb: int = Field(1024, ge=0, validation_alias="MEMORY_SOFT_LIMIT_MB")
    memory_hard_limit_mb: int = Field(1536, ge=0, validation_alias="MEMORY_HARD_LIMIT_MB")
    memory_check_s: float = Field(1.0, gt=0, le=60, validation_alias="MEMORY_CHECK_S")
    # Per-user quotas on submissions, across API replicas (taskfleet/store/quotas.py).
    submit_rate_per_min: int = Field(600, ge=1, validation_alias="SUBMIT_RATE_PER_MIN")
    max_queued_per_user: int = Field(1000, ge=1, validation_alias="MAX_QUEUED_PER_USER")
    # Every worker writes its row in the registry this often (GET /api/admin/workers).
    worker_heartbeat_s: float = Field(5.0, gt=0, le=300, validation_alias="WORKER_HEARTBEAT_S")
    publish_timeout_s: float = Field(10.0, gt=0, validation_alias="PUBLISH_TIMEOUT_S")
    amqp_heartbeat_s: int = Field(5, ge=0, validation_alias="AMQP_HEARTBEAT_S")
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

    # The reconciler (taskfleet/runtime/reconciler.py), one pass every RECONCILE_INTERVAL_S in one
    # process of the fleet (0: off). A queued task whose message was lost, or a waiting task
    # whose children all ended, is repaired once it has not changed for RECONCILE_AFTER_S; a
    # running task is handed over when its holder is gone or it is TASK_GRACE_S past its
    # deadline.
    reconcile_interval_s: float = Field(5.0, ge=0, validation_alias="RECONCILE_INTERVAL_S")
    reconcile_after_s: float = Field(60.0, gt=0, validation_alias="RECONCILE_AFTER_S")
    task_grace_s: float = Field(60.0, ge=0, validation_alias="TASK_GRACE_S")

    user_concurrency: int = Field(4, ge=1, validation_alias="USER_CONCURRENCY")
    throttle_delay_s: float = Field(1.0, gt=0, validation_alias="THROTTLE_DELAY_S")
    max_content_chars: int = Field(32_000, ge=1, validation_alias="MAX_CONTENT_CHARS")

    # Test-only crash points of the fault-injection suite (taskfleet.core.faults); empty in
    # production, where the message path behaves exactly as without it.
    faults: str = Field("", validation_alias="TASKFLEET_FAULTS")

    @field_validator("faults")
    @classmethod
    def _valid_faults(cls, value: str) -> str:
        from taskfleet.core.faults import Faults

        Faults.parse(value)
        return value

    # Retention (docs/operations.md): `taskfleet cleanup` and the API's periodic job delete
    # terminal tasks that finished longer ago than this (`30d`, `12h`, `90m` or seconds), with
    # what hangs off them. The job runs every RETENTION_INTERVAL_S in one API replica; 0: off.
    retention_older_than_s: float = Field(
        30 * 86400.0, gt=0, validation_alias="RETENTION_OLDER_THAN"
    )
    retention_interval_s: float = Field(3600.0, ge=0, validation_alias="RETENTION_INTERVAL_S")

    @field_validator("retention_older_than_s", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    # camera-worker and the camera routes (docs/cameras.md).
    camera_max_frame_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, validation_alias="CAMERA_MAX_FRAME_BYTES"
    )
    # Above this many pixels an image is a decompression bomb: refused before it is decoded.
    camera_max_pixels: int = Field(25_000_000, ge=1, validation_alias="CAMERA_MAX_PIXELS")
    camera_thumbnail_px: int = Field(160, ge=16, le=1024, validation_alias="CAMERA_THUMBNAIL_PX")
    camera_motion_threshold: float = Field(
        0.02, ge=0, le=1, validation_alias="CAMERA_MOTION_THRESHOLD"
    )
    camera_capture_timeout_s: float = Field(10.0, gt=0, validation_alias="CAMERA_CAPTURE_TIMEOUT_S")
    # A capture belongs to its time slot: the next slot is its retry, so one attempt by default.
    camera_capture_max_attempts: int = Field(
        1, ge=1, le=10, validation_alias="CAMERA_CAPTURE_MAX_ATTEMPTS"
    )
    # At most half the shortest interval (1 s), so that a living scheduler never skips a slot.
    camera_scheduler_tick_s: float = Field(
        0.25, gt=0, le=0.5, validation_alias="CAMERA_SCHEDULER_TICK_S"
    )
    # How often a standby replica tries to take the scheduler lock (bounds the takeover time).
    camera_lock_retry_s: float = Field(1.0, gt=0, le=30, validation_alias="CAMERA_LOCK_RETRY_S")

    # Documents and doc-worker (docs/documents.md). The upload limit is streamed and counted,
    # so it may exceed the API's 1 MiB body limit of every other route.
    document_max_bytes: int = Field(
        50 * 1024 * 1024, ge=1, le=1024**3, validation_alias="DOCUMENT_MAX_BYTES"
    )
    # Uploads one API replica receives at once (503 with Retry-After beyond). Each is spooled
    # to a temporary file past its first MiB: this bounds the disk and the database's work.
    document_max_uploads: int = Field(4, ge=1, le=1000, validation_alias="DOCUMENT_MAX_UPLOADS")
    # Pages per checkpoint: a redelivered task resumes after the last whole batch.
    doc_batch_pages: int = Field(10, ge=1, le=1000, validation_alias="DOC_BATCH_PAGES")
    # The parser child's limits: address space for the whole child, CPU and wall time per page.
    doc_parse_memory_mb: int = Field(512, ge=128, validation_alias="DOC_PARSE_MEMORY_MB")
    doc_parse_cpu_s: int = Field(30, ge=1, validation_alias="DOC_PARSE_CPU_S")
    doc_parse_timeout_s: float = Field(60.0, gt=0, validation_alias="DOC_PARSE_TIMEOUT_S")
    # Makes the parser sleep this long per page: demos and the crash-resume tests only.
    doc_page_delay_ms: int = Field(0, ge=0, le=60_000, validation_alias="DOC_PAGE_DELAY_MS")

    # The agent (docs/agent.md). Rounds of tool calls per chat task; after the last one the
    # model is asked without tools and answers with what it has.
    max_agent_steps: int = Field(5, ge=1, le=50, validation_alias="MAX_AGENT_STEPS")
    # Earlier messages of the chat sent to the model with each new one.
    chat_history_messages: int = Field(20, ge=0, le=500, validation_alias="CHAT_HISTORY_MESSAGES")
    # HTTP attempts per LLM call (429, 5xx, connection errors, a stall before the first token),
    # and the longest wait between two of them: a longer Retry-After becomes a task retry, so
    # that no worker sleeps through it.
    llm_max_attempts: int = Field(3, ge=1, le=10, validation_alias="LLM_MAX_ATTEMPTS")
    llm_retry_max_wait_s: float = Field(20.0, ge=0, validation_alias="LLM_RETRY_MAX_WAIT_S")
    # Memory extraction after each reply: bounded on its own, never fails the reply.
    memory_extraction: bool = Field(True, validation_alias="MEMORY_EXTRACTION")
    memory_timeout_s: float = Field(20.0, gt=0, validation_alias="MEMORY_TIMEOUT_S")
    # tool-worker's tools.
    smtp_url: str = Field("smtp://127.0.0.1:25", pattern=r"^smtps?://", validation_alias="SMTP_URL")
    smtp_from: str = Field("taskfleet@localhost", min_length=3, validation_alias="SMTP_FROM")
    # Hosts http_get may fetch, comma-separated (`example.com,api.example.org`); empty: none.
    http_get_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias="HTTP_GET_ALLOWED_HOSTS"
    )
    http_get_max_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, validation_alias="HTTP_GET_MAX_BYTES"
    )
    http_get_timeout_s: float = Field(10.0, gt=0, validation_alias="HTTP_GET_TIMEOUT_S")

    @field_validator("http_get_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`30d`, `12h`, `90m`, `45s` or plain seconds, as seconds (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    seconds = float(match[1]) * _UNITS[match[2] or "s"] if match else 0.0
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r}: use e.g. 30d, 12h, 90m or seconds")
    return seconds
