"""Retention on PostgreSQL while late-dated records arrive: its locks are taken in an
order that cannot deadlock with a writer, and nothing removed goes unarchived."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from afs.continuous import UsageLogger
from afs.continuous.errors import ContinuousError
from afs.continuous.store.postgres import PostgresUsageStore
from tests.postgres_server import fresh_schema

JANUARY, FEBRUARY = "2015-01-10T12:00:00Z", "2015-02-10T12:00:00Z"


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def _waiting_for_a_lock(url: str, *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("retention never waited for the writer's lock")


def test_retention_waits_for_a_writer_of_late_records_instead_of_deadlocking(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer holding February's partition then writing into January's, while
    retention removes both months: retention used to lock January, wait for February,
    and the server killed one of them as a deadlock (retried as a lost connection for
    minutes). Now retention takes the parent table first, so it waits its turn, then
    archives and removes the writer's records too."""
    with UsageLogger(pg_url) as logger:
        logger.log_many(
            [{"query": f"q{i}", "response": "r", "model": "m", "timestamp": at}
             for i, at in enumerate([JANUARY, FEBRUARY] * 5)]
        )  # fmt: skip
    writer = psycopg.connect(pg_url)
    writer.execute("CREATE TEMP TABLE late AS SELECT * FROM usage WHERE query = 'q0'")
    writer.commit()
    outcome: dict[str, Any] = {}

    def retention() -> None:
        store = PostgresUsageStore(pg_url)
        try:
            outcome["result"] = store.drop_before(
                datetime(2015, 3, 1, tzinfo=UTC), archive=tmp_path / "old.jsonl.gz"
            )
        except BaseException as exc:  # reported by the test
            outcome["error"] = exc
        finally:
            store.close()

    caplog.set_level(logging.WARNING)
    try:
        # February first (its partition locked by the writer), then retention starts
        writer.execute("UPDATE late SET id = 'late-feb', timestamp = %s", (FEBRUARY,))
        writer.execute("INSERT INTO usage SELECT * FROM late")
        thread = threading.Thread(target=retention)
        thread.start()
        _waiting_for_a_lock(pg_url)
        writer.execute("UPDATE late SET id = 'late-jan', timestamp = %s", (JANUARY,))
        writer.execute("INSERT INTO usage SELECT * FROM late")  # deadlocked here before
        writer.commit()
        thread.join(timeout=60)
    finally:
        writer.close()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result["removed_records"] == result["archived_records"] == 12
    with gzip.open(tmp_path / "old.jsonl.gz", "rt") as archive:
        assert {"late-feb", "late-jan"} <= {json.loads(line)["id"] for line in archive}
    assert not [r for r in caplog.records if "connection lost" in r.getMessage()]


def test_a_transaction_the_server_rolled_back_as_a_deadlock_runs_again_at_once(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a lost connection: no back-off, no "connection lost" warning; a conflict that
    never clears ends in one error saying so."""
    store = PostgresUsageStore(pg_url)
    calls: list[bool] = []

    def twice_a_victim(conn: psycopg.Connection[Any], retried: bool) -> int:
        calls.append(retried)
        if len(calls) <= 2:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return 7

    def always(conn: psycopg.Connection[Any], retried: bool) -> int:
        raise psycopg.errors.SerializationFailure("could not serialize access")

    caplog.set_level(logging.INFO)
    try:
        started = time.monotonic()
        assert store._retrying(twice_a_victim) == 7
        assert calls == [False, True, True] and time.monotonic() - started < 1.0
        with pytest.raises(ContinuousError, match="conflicted with others 21 times"):
            store._retrying(always)
    finally:
        store.close()
    assert not [r for r in caplog.records if "connection lost" in r.getMessage()]
