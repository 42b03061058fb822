"""Connections and transactions: one writer connection behind a lock, short-lived
connections for streaming reads, and SQLite's busy errors retried, never shown."""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from afs.continuous.errors import (
    SchemaVersionError,
    StoreOpenError,
    StoreUnavailableError,
)
from afs.continuous.records import new_record_id
from afs.continuous.store.base import DEFAULT_DB_PATH, IdFactory
from afs.continuous.store.sqlite.rollup import _fold
from afs.continuous.store.sqlite.schema import (
    _Migration,
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
)
from afs.continuous.timeutil import format_timestamp

log = logging.getLogger(__name__)

_BUSY_TIMEOUT_S = 60.0
#: write-ahead log pages (32 MiB) past which the checkpoint thread holds writers back
_WAL_RESTART_PAGES = 8192

_STREAM_BATCH = 1000


class StoreBusyError(StoreUnavailableError):
    """Another process held the database's write lock for longer than the busy timeout."""


def _why(exc: sqlite3.DatabaseError) -> str:
    """SQLite's reason, with what it most often means when it says little."""
    reason = str(exc)
    if reason == "file is not a database":
        return "the file is not an SQLite database"
    if reason == "unable to open database file":
        return "unable to open the file (is its folder writable?)"
    return reason


def _ensure_ln(conn: sqlite3.Connection) -> None:
    """SQLite builds without math functions get ``ln`` from Python (slower, same result)."""
    try:
        conn.execute("SELECT ln(1.0)")
    except sqlite3.OperationalError:
        conn.create_function("ln", 1, math.log, deterministic=True)


class SQLiteConnection:
    """The store's connections, transactions and schema; the other parts of the store
    build on these."""

    def __init__(
        self,
        path: str | Path,
        *,
        id_factory: IdFactory = new_record_id,
        busy_timeout_s: float = _BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path).expanduser()
        self._id_factory = id_factory
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._since_fold = 0
        self._id_pool: list[str] = []
        self._checkpoints: tuple[threading.Event, threading.Thread] | None = None
        try:
            if self.path.is_dir():
                raise StoreOpenError(f"cannot open SQLite database {self.path}: it is a directory")
            blocking = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
            if blocking is not None:
                raise StoreOpenError(
                    f"cannot open SQLite database {self.path}: {blocking} is a file, not a folder"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._connect()
        except OSError as exc:
            raise StoreOpenError(
                f"cannot open SQLite database {self.path}: {exc.strerror or exc}"
                + _default_path_hint(self.path)
            ) from exc
        except sqlite3.DatabaseError as exc:  # not a database, no permission, no space…
            raise StoreOpenError(f"cannot open SQLite database {self.path}: {_why(exc)}") from exc
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreOpenError(f"cannot open SQLite database {self.path}: {_why(exc)}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        _ensure_ln(conn)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -32768")
        return conn

    def _retry_busy(self, action: Callable[[], Any]) -> Any:
        """Run ``action``, retrying while SQLite reports the database busy or locked.

        SQLite's busy handler covers most waits, but a few paths (switching to WAL,
        a checkpoint racing a commit) return SQLITE_BUSY at once; callers must never
        see that as an error while the deadline has not passed.
        """
        deadline = time.monotonic() + self._busy_timeout_s
        delay = 0.001
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if "locked" not in message and "busy" not in message:
                    raise
                if time.monotonic() > deadline:
                    raise StoreBusyError(
                        f"{self.path}: database stayed locked for {self._busy_timeout_s:.0f}s"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._retry_busy(lambda: conn.execute("COMMIT"))

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for a few short statements on the shared connection."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def _stream(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Generator[Any]:
        """Rows of one query, read in batches on a connection of its own."""
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            _ensure_ln(conn)
            cursor = conn.execute(sql, params)
            while rows := cursor.fetchmany(_STREAM_BATCH):
                yield from rows
        finally:
            conn.close()

    def _scan_one(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any:
        """The single row of an aggregate that may scan much of the table.

        It runs on a connection of its own, so it neither holds the writer's lock (a
        ``log()`` in another thread never waits for it) nor grows the writer's cache.
        """
        rows = self._stream(sql, params)
        try:
            return next(rows)
        finally:
            rows.close()

    def close(self) -> None:
        if self._checkpoints is not None:
            stop, thread = self._checkpoints
            stop.set()
            thread.join()
        with self._lock:
            self._conn.close()

    def checkpoint_in_background(
        self, every_s: float = 1.0, *, restart_pages: int = _WAL_RESTART_PAGES
    ) -> None:
        """Copy the write-ahead log into the database every ``every_s`` from a thread of
        its own, instead of in whichever commit fills the log past SQLite's 1,000 pages.

        For a long-running writer (the collector's): that commit otherwise waits for the
        copy and its file sync, a few milliseconds, and every request queued behind it
        waits too. Each round copies what it can without waiting for anyone (PASSIVE).
        But the log starts again from its beginning only once it has been copied whole
        with no writer in it, which steady writes never allow: a log left over
        ``restart_pages`` (32 MiB) is then finished with writers held back (RESTART), for
        the little the round left. Without that the log grew by gigabytes in minutes;
        SQLite's own mark, 1,000 pages, made writers wait several times a second.
        """
        if self._checkpoints is not None:
            return
        with self._lock:
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
        stop = threading.Event()
        thread = threading.Thread(
            target=self._checkpoint_until, args=(stop, every_s, restart_pages),
            name="afs-sqlite-checkpoint",
            daemon=True,
        )  # fmt: skip
        self._checkpoints = (stop, thread)
        thread.start()

    def _checkpoint_until(self, stop: threading.Event, every_s: float, restart_pages: int) -> None:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        try:
            while not stop.wait(every_s):
                try:
                    _busy, pages, _copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).fetchone()
                    if pages > restart_pages:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)")
                except sqlite3.OperationalError as exc:  # busy or locked: next time
                    log.debug("sqlite checkpoint of %s deferred: %s", self.path, exc)
        finally:
            conn.close()

    def _migrate(self) -> None:
        migrations = (
            _Migration(1, "usage table, indexes and rollup", _migration_1),
            _Migration(2, "loop state", _migration_2),
            _Migration(3, "error flag", _migration_3),
            _Migration(4, "assignment key (hashed)", _migration_4),
            _Migration(5, "conversations", _migration_5),
            _Migration(6, "data sets (membership)", _migration_6),
            _Migration(7, "corrections", _migration_7),
        )
        latest = migrations[-1].version
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0
            if current > latest:
                raise SchemaVersionError(
                    f"{self.path} has schema version {current}; this afs-continuous knows "
                    f"up to {latest}. Upgrade afs-continuous."
                )
            for migration in migrations:
                if migration.version > current:
                    migration.apply(conn)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) "
                        "VALUES (?, ?, ?)",
                        (
                            migration.version,
                            migration.name,
                            format_timestamp(datetime.now()),
                        ),
                    )

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0])

    def fold(self) -> None:
        """Fold rows inserted since the last fold into the rollup."""
        with self._write() as conn:
            _fold(conn)
            self._since_fold = 0


def _default_path_hint(path: Path) -> str:
    """Where nothing named a database, say so: in a container HOME is often not writable
    (the image's is /nonexistent), and the path alone does not tell why it was chosen."""
    if path != Path(DEFAULT_DB_PATH).expanduser():
        return ""
    return "; it is the default under $HOME: give --db, or set AFS_DATABASE_URL"
