"""A real PostgreSQL restarting in the middle of an ingest: nothing lost, nothing twice."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from afs.continuous import UsageLogger
from tests.postgres_server import fresh_schema, restart_server

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("AFS_TEST_DATABASE_URL")),
    reason="restarts the server, which only the test's own throwaway server allows",
)

BATCHES, BATCH = 40, 500


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def _rows(batch: int) -> list[dict[str, object]]:
    return [
        {"query": f"q {batch}-{i}", "response": "r", "model": "m", "quality_score": 0.5}
        for i in range(BATCH)
    ]


def _restart_after(logger_done: threading.Event, delay: float, errors: list[BaseException]) -> None:
    try:
        time.sleep(delay)
        if not logger_done.is_set():
            restart_server()
    except BaseException as exc:  # pragma: no cover - reported by the test
        errors.append(exc)


def _server_started(url: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
        assert row is not None
        return row[0]


def _count(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT id) FROM usage").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def test_log_many_survives_a_server_restart_exactly_once(pg_url: str) -> None:
    done = threading.Event()
    errors: list[BaseException] = []
    before = _server_started(pg_url)
    with UsageLogger(url=pg_url) as logger:
        restarter = threading.Thread(target=_restart_after, args=(done, 0.3, errors))
        restarter.start()
        ids: list[str] = []
        started = time.monotonic()
        for batch in range(BATCHES):
            ids += logger.log_many(_rows(batch))
            if batch == BATCHES // 2 and restarter.is_alive():
                restarter.join()  # make sure the restart happened mid-ingest
        done.set()
        restarter.join()
        assert errors == []
        assert _server_started(pg_url) != before  # the server really restarted
        assert time.monotonic() - started > 0.3
        assert len(set(ids)) == BATCHES * BATCH
        assert logger.get_statistics()["total"] == BATCHES * BATCH
    assert _count(pg_url) == (BATCHES * BATCH, BATCHES * BATCH)


def test_buffered_logger_survives_a_server_restart(pg_url: str) -> None:
    errors: list[BaseException] = []
    before = _server_started(pg_url)
    with UsageLogger(url=pg_url) as logger:
        with logger.buffered(batch_size=500, max_pending=5000, flush_interval_s=0.05) as buffered:
            ids = [buffered.log(f"q{i}", "r", "m") for i in range(3000)]
            restarter = threading.Thread(
                target=_restart_after, args=(threading.Event(), 0.0, errors)
            )
            restarter.start()  # the writer thread meets the restart while we keep logging
            ids += [buffered.log(f"q{i}", "r", "m") for i in range(3000, 10_000)]
            assert buffered.record_feedback(ids[-1], 1)  # feedback on a queued record
            restarter.join()
        assert errors == []
        assert _server_started(pg_url) != before
        assert logger.get_statistics()["positive_feedback"] == 1
    assert len(set(ids)) == 10_000
    assert _count(pg_url) == (10_000, 10_000)


def test_a_read_after_a_restart_is_served_though_its_pooled_connection_died(
    pg_url: str,
) -> None:
    """A connection that sat idle in the pool through a restart is replaced before the
    query runs, for streamed reads as for the rest."""
    with UsageLogger(url=pg_url) as logger:
        logger.log_many(_rows(0))
        assert len(list(logger.get_records(limit=None))) == BATCH  # the pool holds one now
        restart_server()
        assert len(list(logger.get_records(limit=None))) == BATCH
