"""Usage stores, chosen by :func:`open_store` from a path or a database URL.

Callers use the factory and the :class:`UsageStore` interface, never a backend module.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

from afs.continuous.errors import InvalidFieldError, redact_secrets
from afs.continuous.records import new_record_id
from afs.continuous.store.base import (
    DEFAULT_DB_PATH as DEFAULT_DB_PATH,
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
    "database_exists",
    "is_postgres_url",
    "open_store",
    "resolve_target",
    "sqlite_path_from_target",
]

DATABASE_URL_ENV = "AFS_DATABASE_URL"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


_LIBPQ_STRING = re.compile(
    r"^\s*(host|hostaddr|port|dbname|user|password|sslmode|service)\s*=", re.IGNORECASE
)


def sqlite_path_from_target(target: str | Path) -> Path:
    """The file behind a plain path or a ``sqlite:///path`` URL, with ``~`` expanded."""
    if isinstance(target, Path):
        return target.expanduser()
    if not isinstance(target, str) or not target.strip():
        raise InvalidFieldError(
            "db_path", target,
            "must be a file path or a database URL (empty: is $AFS_DATABASE_URL set?)",
        )  # fmt: skip
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
            "db_path",
            redact_secrets(target),
            f"uses an unknown database scheme ({scheme!r}); use a file path, sqlite:///path "
            "or postgresql://…",
        )
    if _LIBPQ_STRING.match(target):  # not a file name: never create a file called that
        raise InvalidFieldError(
            "db_path",
            redact_secrets(target),
            "looks like a libpq key=value string; use a postgresql:// URL",
        )
    return Path(target).expanduser()


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def database_exists(target: str | Path) -> bool:
    """Whether ``target`` names a database that is there already: a SQLite file that
    exists (a PostgreSQL URL is taken as there; opening it tells). Commands that only
    read use it so that a mistyped path is an error, not a new empty database."""
    if is_postgres_url(target):
        return True
    return sqlite_path_from_target(target).exists()


def resolve_target(db_path: str | Path | None = None, url: str | None = None) -> str | Path:
    """Where the usage records live: ``url``, else ``db_path``, else the environment
    variable ``AFS_DATABASE_URL``, else the embedded default SQLite file."""
    if url is not None:
        if not is_postgres_url(url) and not str(url).startswith("sqlite:"):
            raise InvalidFieldError(
                "url", redact_secrets(str(url)), "must be a postgresql:// or sqlite:/// URL"
            )
        return url
    if db_path is not None:
        return db_path
    return os.environ.get(DATABASE_URL_ENV) or DEFAULT_DB_PATH


def open_store(
    target: str | Path,
    *,
    id_factory: IdFactory = new_record_id,
    migrate: bool | None = None,
    retry_seconds: float | None = None,
) -> UsageStore:
    """Open the store a path or URL names, creating and migrating it if needed.

    ``postgresql://`` (or ``postgres://``) URLs open PostgreSQL; anything else is SQLite.
    ``AFS_AUTO_MIGRATE=0`` makes PostgreSQL refuse an old schema instead of migrating it.
    ``retry_seconds`` bounds how long PostgreSQL calls retry a lost connection before
    raising StoreUnavailableError (default: long enough to ride out a server restart).
    """
    if is_postgres_url(target):
        from afs.continuous.store.postgres import PostgresUsageStore

        if migrate is None:
            migrate = os.environ.get("AFS_AUTO_MIGRATE", "1").strip().lower() not in ("0", "false")
        if retry_seconds is None:
            return PostgresUsageStore(str(target), id_factory=id_factory, migrate=migrate)
        return PostgresUsageStore(
            str(target), id_factory=id_factory, migrate=migrate, retry_seconds=retry_seconds
        )
    from afs.continuous.store.sqlite import SQLiteUsageStore

    return SQLiteUsageStore(sqlite_path_from_target(target), id_factory=id_factory)
