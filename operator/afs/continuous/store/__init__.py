"""Usage stores, chosen by :func:`open_store` from a path or a database URL.

Callers use the factory and the :class:`UsageStore` interface, never a backend module.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from afs.continuous.errors import InvalidFieldError
from afs.continuous.records import new_record_id
from afs.continuous.store.base import (
    IdFactory,
    RecordQuery,
    SelectionCounts,
    TrainingRow,
    TrainingSelection,
    UsageStatistics,
    UsageStore,
)

__all__ = [
    "RecordQuery",
    "SelectionCounts",
    "TrainingRow",
    "TrainingSelection",
    "UsageStatistics",
    "UsageStore",
    "open_store",
    "sqlite_path_from_target",
]

DEFAULT_DB_PATH = "~/.context/training/continuous/usage.db"


def sqlite_path_from_target(target: str | Path) -> Path:
    """The file behind a plain path or a ``sqlite:///path`` URL, with ``~`` expanded."""
    if isinstance(target, Path):
        return target.expanduser()
    if not isinstance(target, str) or not target.strip():
        raise InvalidFieldError("db_path", target, "must be a file path or a database URL")
    if target.strip() == ":memory:":
        raise InvalidFieldError(
            "db_path",
            target,
            "must be a file: an in-memory database cannot be shared by the "
            "connections the store opens; use a temporary file",
        )
    if target.startswith("sqlite:"):
        # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy spells them
        if not target.startswith("sqlite:///") or not unquote(target[len("sqlite:///") :]):
            raise InvalidFieldError("db_path", target, "must name a file, as sqlite:///path")
        return Path(unquote(target[len("sqlite:///") :])).expanduser()
    if "://" in target:
        scheme = target.split("://", 1)[0]
        raise InvalidFieldError(
            "db_path", target, f"uses a database scheme this version cannot open ({scheme!r})"
        )
    return Path(target).expanduser()


def open_store(target: str | Path, *, id_factory: IdFactory = new_record_id) -> UsageStore:
    """Open the store a path or URL names, creating and migrating it if needed."""
    from afs.continuous.store.sqlite import SQLiteUsageStore

    return SQLiteUsageStore(sqlite_path_from_target(target), id_factory=id_factory)
