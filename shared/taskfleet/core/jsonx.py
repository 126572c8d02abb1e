"""orjson with the types asyncpg hands back (its own UUID class is not uuid.UUID exactly)."""

import uuid
from typing import Any

import orjson


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """JSON bytes of `value`, asyncpg's UUIDs as strings; other unknown types raise TypeError."""
    return orjson.dumps(value, default=_default)


loads = orjson.loads
