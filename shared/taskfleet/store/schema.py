"""The schema as files: migrations (history, applied once) and function files (the current
definition of each function, applied again when changed). See store/sql/README.md."""

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from taskfleet.core.constants import QUEUES


@dataclass(frozen=True)
class SqlFile:
    """One .sql file: `name` is its file name without .sql (a migration's version, or the
    function a function file defines)."""

    name: str
    sql: str
    checksum: str

    @classmethod
    def of(cls, name: str, data: bytes) -> "SqlFile":
        """A file's record, its checksum a SHA-256 of the bytes so that any change is seen."""
        return cls(name, data.decode(), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Schema:
    migrations: list[SqlFile]
    functions: list[SqlFile]

    @classmethod
    def packaged(cls) -> "Schema":
        """The files shipped in taskfleet.store: migrations/ and sql/, each in name order."""
        root = resources.files("taskfleet.store")
        functions = [*_read(root.joinpath("sql")), queue_of_function()]
        return cls(_read(root.joinpath("migrations")), sorted(functions, key=lambda f: f.name))


def _read(folder: Traversable) -> list[SqlFile]:
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [SqlFile.of(p.name.removesuffix(".sql"), p.read_bytes()) for p in files]


def queue_of_function() -> SqlFile:
    """tf_queue_of, written from core.constants.QUEUES so that the type -> queue map exists
    once. It stays an IMMUTABLE CASE: the planner inlines it where the reconciler filters
    on it row by row, which a function reading a table would not allow."""
    when = (f"        WHEN {_literal(t)} THEN {_literal(q.name)}\n" for t, q in QUEUES.items())
    sql = (
        "-- The queue a task type is consumed from (the relay adds the namespace). Written by\n"
        "-- taskfleet.store.schema from core/constants.py QUEUES: change the map there.\n"
        "CREATE OR REPLACE FUNCTION tf_queue_of(p_type text) RETURNS text"
        " LANGUAGE sql IMMUTABLE AS $$\n"
        f"    SELECT CASE p_type\n{''.join(when)}    END;\n$$;\n"
    )
    return SqlFile.of("tf_queue_of", sql.encode())


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
