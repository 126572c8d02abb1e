"""The settings of the database connections that a pooler in front of PostgreSQL changes.

`Settings` inherits them; they are apart only to keep settings.py readable (docs/operations.md,
"PgBouncer").
"""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    """How the pools and the session-bound connections reach PostgreSQL."""

    model_config = SettingsConfigDict(
        populate_by_name=True, extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    database_direct_url: str | None = Field(None, validation_alias="DATABASE_DIRECT_URL")
    """PostgreSQL itself, for what needs a session of its own: migrations, the retention job, the
    schedule runner and the camera scheduler (session advisory locks). Unset: DATABASE_URL. Set it
    when DATABASE_URL names a pooler in transaction mode (PgBouncer), which shares one server
    session among many clients."""

    database_statement_cache: int = Field(
        100, ge=0, le=10_000, validation_alias="DATABASE_STATEMENT_CACHE"
    )
    """Prepared statements each pooled connection keeps (asyncpg's statement cache). 0: none,
    which a pooler in transaction mode needs unless it tracks them itself (PgBouncer 1.21 and
    later with `max_prepared_statements`; Debian 12's 1.18 does not)."""

    @property
    def direct_database_url(self) -> str:
        """DATABASE_DIRECT_URL, or DATABASE_URL when it is unset."""
        return self.database_direct_url or self.database_url  # type: ignore[attr-defined]
