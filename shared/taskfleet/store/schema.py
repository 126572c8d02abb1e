"""The schema as files: migrations (history, applied once) and function files (the current
definition of each function, applied again when changed). See store/sql/README.md."""

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable


@dataclass(frozen=True)
class SqlFile:
    """One .sql file: `name` is its file name without .sql (a migration's version, or the
    function a function file defines)."""

    name: str
    sql: str
    checksum: str

    @classmethod
    def of(cls, name: str, data: bytes) -> "SqlFile":
        return cls(name, data.decode(), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Schema:
    migrations: list[SqlFile]
    functions: list[SqlFile]

    @classmethod
    def packaged(cls) -> "Schema":
        """The files shipped in taskfleet.store: migrations/ and sql/, each in name order."""
        root = resources.files("taskfleet.store")
        return cls(_read(root.joinpath("migrations")), _read(root.joinpath("sql")))


def _read(folder: Traversable) -> list[SqlFile]:
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [SqlFile.of(p.name.removesuffix(".sql"), p.read_bytes()) for p in files]
