"""The API's own settings: the kernel's and the variables only the API reads."""

from pydantic import Field, field_validator

from taskfleet.core.constants import Priority
from taskfleet.core.settings import Settings
from taskfleet.security.targets import AllowedHosts


class ApiSettings(Settings):
    api_metrics_port: int = Field(9100, ge=0, le=65535, validation_alias="API_METRICS_PORT")
    """The API's /metrics, on a port of its own apart from its clients' (0: any free port): metrics
    are for Prometheus, not for clients."""

    max_content_chars: int = Field(32_000, ge=1, validation_alias="MAX_CONTENT_CHARS")
    """The longest chat message accepted (422 beyond; JSON bodies over 1 MiB are 413)."""

    document_max_bytes: int = Field(
        50 * 1024 * 1024, ge=1, le=1024**3, validation_alias="DOCUMENT_MAX_BYTES"
    )
    """The largest document upload. It is streamed and counted, so it may exceed the 1 MiB body
    limit of every other route (docs/documents.md)."""

    document_max_uploads: int = Field(4, ge=1, le=1000, validation_alias="DOCUMENT_MAX_UPLOADS")
    """Uploads one API replica receives at once (503 with Retry-After beyond). Each is spooled to a
    temporary file past its first MiB: this bounds the disk and the database's work."""

    max_delay_s: float = Field(30 * 86400, gt=0, le=366 * 86400, validation_alias="MAX_DELAY_S")
    """The furthest ahead a submission may be delayed with `run_at` or `delay_s`, in seconds (400
    beyond; docs/scheduling.md)."""

    jwt_jwks_url: str | None = Field(None, min_length=1, validation_alias="JWT_JWKS_URL")
    """A JSON Web Key Set (`https://…/.well-known/jwks.json`): RS256 tokens whose `kid` names one
    of its RSA keys are accepted besides the HS256 ones, with the same claims (`iss` JWT_ISSUER,
    `aud` JWT_AUDIENCE, `exp`, `sub`, `jti`, `scope`), so a backend that signs its own tokens
    never holds TASKFLEET_JWT_SECRET (docs/integrating.md)."""

    jwt_jwks_refresh_s: float = Field(300, gt=0, le=86_400, validation_alias="JWT_JWKS_REFRESH_S")
    """Seconds between two fetches of JWT_JWKS_URL; a token naming a key not yet known fetches it
    at once (at most every 30 s), so a key rotation needs no restart."""

    webhook_allowed_hosts: str = Field("", validation_alias="WEBHOOK_ALLOWED_HOSTS")
    """Webhook targets allowed although private or loopback: comma-separated host names and CIDRs
    (`receiver.internal,10.0.0.0/8`). Any other private, loopback, link-local or reserved address
    is refused (docs/integrating.md#webhooks)."""

    webhook_deadline_s: float = Field(86_400.0, gt=0, validation_alias="WEBHOOK_DEADLINE_S")
    """How long a webhook is tried again after its event, in seconds: then it is `failed`."""

    webhook_backoff_s: float = Field(5.0, gt=0, validation_alias="WEBHOOK_BACKOFF_S")
    """The wait after a webhook's first failed attempt, doubled after each next one."""

    webhook_backoff_max_s: float = Field(3600.0, gt=0, validation_alias="WEBHOOK_BACKOFF_MAX_S")
    """The longest wait between two attempts of a webhook."""

    webhook_timeout_s: float = Field(10.0, gt=0, le=300, validation_alias="WEBHOOK_TIMEOUT_S")
    """How long one webhook POST may take, connection included."""

    webhook_poll_s: float = Field(1.0, gt=0, validation_alias="WEBHOOK_POLL_S")
    """The webhook deliverer's longest sleep between two looks for due deliveries."""

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: str) -> str:
        AllowedHosts.parse(value)  # ValueError: the process refuses to start, one line
        return value

    scheduler_tick_s: float = Field(0.25, ge=0, le=1, validation_alias="SCHEDULER_TICK_S")
    """How often the schedule runner looks for due schedules (docs/scheduling.md#schedules),
    in the one replica that holds its lock; 0: this replica never runs schedules."""

    scheduler_lock_retry_s: float = Field(
        1.0, gt=0, le=30, validation_alias="SCHEDULER_LOCK_RETRY_S"
    )
    """How often a standby replica tries to take the schedule runner's lock (bounds the
    takeover time)."""

    schedule_grace_s: float = Field(60.0, gt=0, le=86400, validation_alias="SCHEDULE_GRACE_S")
    """How late a schedule's tick may still run: older ticks are missed, and the schedule's
    `missed` policy says what becomes of them."""
    priority_tiers: str = Field("", validation_alias="PRIORITY_TIERS")
    """The default priority of a submission by the token's `tier` claim: `tier:level` pairs
    separated by commas, e.g. `paid:high,free:normal` (levels `high`, `normal`, `low`). A tier not
    listed, or no tier, is `normal`; a submission's own `priority` wins (docs/priorities.md)."""

    @field_validator("priority_tiers")
    @classmethod
    def _tiers_parse(cls, text: str) -> str:
        parse_tiers(text)
        return text

    def tier_priority(self, tier: str | None) -> Priority:
        """The default priority of a submission made with a token of `tier`."""
        return parse_tiers(self.priority_tiers).get(tier or "", Priority.NORMAL)


def parse_tiers(text: str) -> dict[str, Priority]:
    """`paid:high,free:normal` as {tier: priority}; ValueError for anything else."""
    tiers: dict[str, Priority] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        tier, sep, level = (part.strip() for part in pair.partition(":"))
        if not (tier and sep and level in set(Priority)):
            raise ValueError(f"PRIORITY_TIERS: {pair!r} is not tier:high|normal|low")
        tiers[tier] = Priority(level)
    return tiers
