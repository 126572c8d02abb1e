"""The API's own settings: the kernel's and the variables only the API reads."""

from pydantic import Field

from taskfleet.core.settings import Settings


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
