"""The connection pool, a transaction retried on a lost connection, migrations under
an advisory lock, and the partitions a batch needs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import errors, sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from afs.continuous.errors import (
    ContinuousError,
    SchemaVersionError,
    StoreUnavailableError,
    redact_secrets,
)
from afs.continuous.records import new_record_id
from afs.continuous.store.base import IdFactory
from afs.continuous.store.partitions import (
    Partition,
    parse_partition_name,
    partition_for,
)
from afs.continuous.store.postgres.failures import failure_kind
from afs.continuous.store.postgres.schema import (
    _ADVISORY_KEY,
    _PARTITIONS_AHEAD_DAYS,
    LATEST_VERSION,
    MIGRATIONS,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY_SECONDS = 120.0


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")
    # the loop's queries are short; starting parallel workers costs more than it saves
    conn.execute("SET max_parallel_workers_per_gather = 0")
    # our prepared statements (counts, window statistics) run over every partition: their
    # cost is planning, not execution, and the plan pruned at run time is the same for
    # every call, so plan once (custom plans made each check grow with the history)
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.commit()


#: a deadlock or serialization failure is retried at once, this many times in a row
_MAX_CONFLICT_RETRIES = 20


class PostgresConnection:
    """The pool, the retry on a lost connection, migrations and partitions; the other
    parts of the store build on these."""

    def __init__(
        self,
        url: str,
        *,
        id_factory: IdFactory = new_record_id,
        migrate: bool = True,
        pool_size: int = 4,
        retry_seconds: float = _RETRY_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.url = url
        self._id_factory = id_factory
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._known_days: set[date] = set()
        self._id_pool: list[str] = []
        self._partition_lock = threading.Lock()
        _probe(url)
        self.pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            configure=_configure,
            open=False,
            timeout=min(30.0, retry_seconds),  # waiting for a connection counts too
            name="afs-continuous",
        )
        try:
            self.pool.open(wait=True, timeout=30)
        except PoolTimeout as exc:
            self.pool.close()
            raise StoreUnavailableError(f"cannot connect to PostgreSQL at {_safe(url)}") from exc
        try:
            if migrate:
                self.migrate()
            else:
                self._check_schema()
        except BaseException:
            self.pool.close()
            raise

    def _retrying(self, action: Callable[[psycopg.Connection[TupleRow], bool], T]) -> T:
        """Run ``action(conn, retried)`` in a transaction, again on a lost connection."""
        deadline = time.monotonic() + self._retry_seconds
        delay = 0.05
        retried = False
        conflicts = 0
        while True:
            try:
                with self.pool.connection() as conn, conn.transaction():
                    return action(conn, retried)
            except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
                # a deadlock or a serialization failure: the server rolled this one back
                # so the other could finish; run it again at once (the connection is fine)
                conflicts += 1
                if conflicts > _MAX_CONFLICT_RETRIES:
                    raise ContinuousError(
                        f"PostgreSQL at {_safe(self.url)}: the transaction conflicted with "
                        f"others {conflicts} times in a row ({failure_kind(exc)})"
                    ) from exc
                log.info("PostgreSQL rolled back a transaction (%s); retrying", failure_kind(exc))
                retried = True
            except errors.OutOfMemory as exc:  # the lock table: retrying cannot help
                raise ContinuousError(
                    f"PostgreSQL at {_safe(self.url)} ran out of shared memory: "
                    f"{_first_line(exc)}. One transaction locked more tables than the "
                    "server's lock table holds (max_locks_per_transaction per connection); "
                    "raise that setting or write fewer days at once"
                ) from exc
            except (psycopg.OperationalError, PoolTimeout) as exc:
                delay = self._after_lost_connection(exc, deadline, delay)
                retried = True

    def _after_lost_connection(self, exc: Exception, deadline: float, delay: float) -> float:
        """StoreUnavailableError once the deadline has passed (or for good), else wait
        ``delay`` with the pool's dead connections dropped; the next delay."""
        # a closed pool (the store was closed, e.g. at shutdown) never comes back
        stop = isinstance(exc, errors.QueryCanceled | PoolClosed)
        if stop or time.monotonic() > deadline:
            raise StoreUnavailableError(
                f"PostgreSQL at {_safe(self.url)} unavailable: {redact_secrets(str(exc))}"
            ) from exc
        # the kind of failure, not the driver's text: that quotes the URL (host, user, …)
        log.warning("PostgreSQL connection lost (the database %s); retrying", failure_kind(exc))
        self.pool.check()
        time.sleep(delay)
        return min(delay * 2, 2.0)

    def close(self) -> None:
        self.pool.close()

    def migrate(self) -> int:
        """Apply pending migrations (idempotent, one process at a time); return the version."""

        def apply(conn: psycopg.Connection[TupleRow], retried: bool) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS afs_schema_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
            )
            row = conn.execute("SELECT max(version) FROM afs_schema_migrations").fetchone()
            current = int(row[0] or 0) if row else 0
            if current > LATEST_VERSION:
                raise SchemaVersionError(
                    f"database schema version {current} is newer than this afs-continuous "
                    f"({LATEST_VERSION}). Upgrade afs-continuous."
                )
            for version, name, statements in MIGRATIONS:
                if version > current:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO afs_schema_migrations VALUES (%s, %s, now())",
                        (version, name),
                    )
            today = self._clock().date()
            for offset in range(-1, _PARTITIONS_AHEAD_DAYS + 1):
                day = today + timedelta(days=offset)
                self._create_partition(conn, Partition(day, day + timedelta(days=1)))
            return LATEST_VERSION

        version = self._retrying(apply)
        self._known_days.clear()
        return version

    def schema_version(self) -> int:
        def read(conn: psycopg.Connection[TupleRow], retried: bool) -> int:
            row = conn.execute("SELECT max(version) FROM afs_schema_migrations").fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        return self._retrying(read)

    def _check_schema(self) -> None:
        try:
            version = self.schema_version()
        except errors.UndefinedTable:
            version = 0
        if version < LATEST_VERSION:
            raise SchemaVersionError(
                f"database at {_safe(self.url)} has schema version {version}; run "
                "`afs-continuous db migrate` (automatic migration is disabled)"
            )

    def _create_partition(self, conn: psycopg.Connection[TupleRow], partition: Partition) -> None:
        start, end = partition.bounds()
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF usage FOR VALUES FROM ({}) TO ({})"
            ).format(sql.Identifier(partition.name), sql.Literal(start), sql.Literal(end))
        )

    def _ensure_partitions(self, conn: psycopg.Connection[TupleRow], days: set[date]) -> None:
        """Create the partitions a batch needs (rarely: the next days exist ahead). Under
        the advisory lock, so two writers never shape overlapping month partitions."""
        with self._partition_lock:
            missing = days - self._known_days
        if not missing:
            return
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        existing = _read_partitions(conn)
        today = self._clock().astimezone(UTC).date()
        for day in sorted(missing):
            if not any(p.covers(day) for p in existing):
                partition = partition_for(day, today=today, existing=existing)
                self._create_partition(conn, partition)
                existing.append(partition)
        with self._partition_lock:
            self._known_days |= missing


def _read_partitions(conn: psycopg.Connection[TupleRow]) -> list[Partition]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'usage'::regclass ORDER BY c.relname"
    ).fetchall()
    found = [parse_partition_name(name) for (name,) in rows]
    return [p for p in found if p is not None]  # a table not of ours is left alone


def _first_line(exc: BaseException) -> str:
    """The error's first line, redacted: the server's CONTEXT lines quote the data being
    written (users' queries and responses), which logs and messages must not carry."""
    return redact_secrets((str(exc).strip().splitlines() or [type(exc).__name__])[0])


def _probe(url: str) -> None:
    """One direct connection before the pool: a pool retries quietly until its timeout,
    so a refused connection or a wrong password would otherwise surface 30 s later as
    "cannot connect", without the server's reason. A URL that does not parse is said to
    be malformed and no more: the parser's message quotes the text around the fault,
    which is often the password."""
    if _safe(url).startswith("<"):
        raise StoreUnavailableError(
            f"cannot connect to PostgreSQL: {_safe(url)}; percent-encode any '/', '@', ':', "
            "'%' or space in the user name and password"
        )
    try:
        with psycopg.connect(url, connect_timeout=10):
            pass
    except psycopg.Error as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise StoreUnavailableError(
            f"cannot connect to PostgreSQL at {_safe(url)}: {redact_secrets(reason)}"
        ) from exc


def _safe(url: str) -> str:
    """The URL without its password, for messages (``<…>`` when it cannot be told apart:
    an unencoded '/' or '@' in a password moves the host into the path, and showing
    "host" and "database" would show the password's pieces)."""
    authority = url.split("://", 1)[-1].split("/", 1)
    if authority[0].count("@") > 1 or (len(authority) == 2 and "@" in authority[1]):
        return "<malformed URL>"
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<malformed URL>"
    host = info.get("host", "localhost")
    return f"{info.get('user', '')}@{host}/{info.get('dbname', '')}"
