"""Group commit: concurrent requests share transactions, and a refusal stays with the
request it belongs to."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from afs.continuous import UsageLogger
from afs.continuous.collector.commits import GroupCommitter
from afs.continuous.collector.writer import ThreadWriter
from afs.continuous.errors import InvalidFieldError, StoreUnavailableError
from afs.continuous.records import RecordRow, UsageRecord, compute_dedupe_hash


def _records(logger: UsageLogger, prefix: str, count: int, **extra: Any) -> list[RecordRow]:
    return logger.build_rows(
        [{"query": f"{prefix}{i}", "response": "r", "model": "m", **extra} for i in range(count)]
    )


async def test_concurrent_requests_share_transactions_and_get_their_own_ids(
    logger: UsageLogger,
) -> None:
    committer = GroupCommitter(ThreadWriter(logger.store))
    requests = [_records(logger, f"req{n}-", 3) for n in range(30)]
    answers = await asyncio.gather(*(committer.commit(r) for r in requests))
    assert committer.groups < len(requests)  # fewer transactions than requests
    for rows, ids in zip(requests, answers, strict=True):
        stored = [logger.store.get(i) for i in ids]
        assert [s.query if s else None for s in stored] == [UsageRecord(*r).query for r in rows]
    assert logger.get_statistics()["total"] == 90


async def test_a_duplicate_id_fails_its_request_alone(logger: UsageLogger) -> None:
    taken = logger.log("q", "r", "m")
    committer = GroupCommitter(ThreadWriter(logger.store))
    good = [_records(logger, f"ok{n}-", 2) for n in range(5)]
    bad = _records(logger, "dup", 1, id=taken)
    results = await asyncio.gather(
        *(committer.commit(r) for r in [*good[:2], bad, *good[2:]]), return_exceptions=True
    )
    assert isinstance(results[2], InvalidFieldError) and results[2].field == "id"
    assert all(isinstance(r, list) and len(r) == 2 for i, r in enumerate(results) if i != 2)
    assert logger.get_statistics()["total"] == 1 + 10


async def test_a_request_cancelled_while_queued_leaves_its_group_written_and_answered(
    logger: UsageLogger,
) -> None:
    committer = GroupCommitter(ThreadWriter(logger.store))
    requests = [
        asyncio.ensure_future(committer.commit(_records(logger, f"c{n}-", 1))) for n in range(4)
    ]
    await asyncio.sleep(0)  # all four queued for the same group
    requests[1].cancel()
    results = await asyncio.gather(*requests, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert all(isinstance(r, list) and len(r) == 1 for i, r in enumerate(results) if i != 1)
    assert logger.get_statistics()["total"] == 4  # the cancelled one's record went too


class _Unreachable:
    """Stands in for a database that cannot be reached (the store's own error)."""

    def __init__(self) -> None:
        self.calls = 0

    def insert(self, records: Any, **_: Any) -> list[str]:
        self.calls += 1
        raise StoreUnavailableError("PostgreSQL at db:5432 unavailable")


async def test_an_unreachable_database_fails_the_group_without_retrying_each(
    logger: UsageLogger,
) -> None:
    store = _Unreachable()
    committer = GroupCommitter(ThreadWriter(store))  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(committer.commit(_records(logger, f"u{n}-", 1)) for n in range(8)),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreUnavailableError) for r in results)
    assert store.calls < 8  # groups failed whole, not request by request


class _Unpicklable(ThreadWriter):
    """A writer that cannot even take the group (as when its rows cannot be pickled)."""

    def submit(self, rows: list[RecordRow]) -> asyncio.Future[list[str]]:
        raise TypeError("cannot pickle 'generator' object")


async def test_a_group_the_writer_cannot_take_fails_its_requests_and_the_next_goes_on(
    logger: UsageLogger,
) -> None:
    writer = _Unpicklable(logger.store)
    committer = GroupCommitter(writer)
    with pytest.raises(TypeError, match="cannot pickle"):
        await committer.commit(_records(logger, "x", 1))
    writer.submit = ThreadWriter(logger.store).submit  # type: ignore[method-assign]
    assert len(await committer.commit(_records(logger, "y", 2))) == 2


@pytest.mark.parametrize("limit", [1, 5])
async def test_a_group_is_bounded(logger: UsageLogger, limit: int) -> None:
    committer = GroupCommitter(ThreadWriter(logger.store), max_records=limit)
    await asyncio.gather(*(committer.commit(_records(logger, f"b{n}-", 1)) for n in range(10)))
    assert committer.groups >= 10 // limit


async def test_the_thread_writer_fills_in_deferred_dedupe_hashes(logger: UsageLogger) -> None:
    records = logger.build_rows([{"query": "Q", "response": "r", "model": "m"}])
    (record_id,) = await ThreadWriter(logger.store).submit(records)
    stored = logger.store.get(record_id)
    assert stored is not None and stored.dedupe_hash == compute_dedupe_hash("Q", "r")
