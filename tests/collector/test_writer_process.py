"""The collector's writer process: groups in, ids out, and every way it can go wrong
turned into the error the collector answers with."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from afs.continuous import UsageLogger
from afs.continuous.collector import writer_process
from afs.continuous.collector.writer_process import (
    ProcessWriter,
    WriterFailedError,
    _Child,
    _ChildProtocol,
    freeze_startup_objects,
)
from afs.continuous.errors import InvalidFieldError, StoreUnavailableError
from afs.continuous.records import RecordRow, UsageRecord, compute_dedupe_hash
from tests.collector.conftest import BROKEN_TRIGGER
from tests.postgres_server import unreachable_url


def _records(logger: UsageLogger, prefix: str, count: int, **extra: object) -> list[RecordRow]:
    return logger.build_rows(
        [{"query": f"{prefix} {i}", "response": "r", "model": "m", **extra} for i in range(count)]
    )


def _process(writer: ProcessWriter) -> _Child:
    assert writer._child is not None
    return writer._child


@pytest.fixture
async def writer(db_path: Path, logger: UsageLogger) -> AsyncIterator[ProcessWriter]:
    running = ProcessWriter(str(db_path))
    await running.start()
    yield running
    await running.close()


async def test_groups_are_committed_with_their_ids_and_hashes(
    writer: ProcessWriter, logger: UsageLogger
) -> None:
    first = await writer.submit(_records(logger, "a", 3))
    second = await writer.submit(_records(logger, "b", 2))
    assert len(set(first + second)) == 5
    stored = logger.store.get(second[1])
    assert stored is not None and stored.query == "b 1"
    assert stored.dedupe_hash == compute_dedupe_hash("b 1", "r")  # deferred, then made


async def test_groups_handed_over_together_get_their_own_answers_in_order(
    writer: ProcessWriter, logger: UsageLogger
) -> None:
    groups = [_records(logger, f"p{n}", n + 1) for n in range(6)]
    answers = await asyncio.gather(*(writer.submit(group) for group in groups))
    for group, ids in zip(groups, answers, strict=True):
        stored = [logger.store.get(i) for i in ids]
        assert [s.query if s else None for s in stored] == [UsageRecord(*r).query for r in group]


async def test_a_supplied_id_that_exists_fails_its_group_and_writes_none_of_it(
    writer: ProcessWriter, logger: UsageLogger
) -> None:
    taken = logger.log("q", "r", "m")
    group = _records(logger, "c", 2) + _records(logger, "dup", 1, id=taken)
    with pytest.raises(InvalidFieldError) as caught:
        await writer.submit(group)
    assert caught.value.field == "id" and caught.value.value == taken
    assert logger.get_statistics()["total"] == 1
    assert len(await writer.submit(_records(logger, "d", 1))) == 1  # and it goes on


async def test_a_child_that_dies_holding_a_group_fails_it_as_unavailable_then_is_replaced(
    writer: ProcessWriter, logger: UsageLogger
) -> None:
    await writer.submit(_records(logger, "e", 1))
    child = _process(writer)
    os.kill(child.pid, signal.SIGSTOP)  # it cannot read the group: the write waits
    task = writer.submit(_records(logger, "lost", 20_000))
    await asyncio.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(StoreUnavailableError, match="writer stopped"):
        await task
    assert len(await writer.submit(_records(logger, "f", 2))) == 2
    assert writer.starts == 2
    assert {r.query for r in logger.get_records(limit=None)} == {"e 0", "f 0", "f 1"}


async def test_a_child_found_dead_between_groups_is_replaced_before_the_next(
    writer: ProcessWriter, logger: UsageLogger, caplog: pytest.LogCaptureFixture
) -> None:
    child = _process(writer)
    os.kill(child.pid, signal.SIGKILL)
    await child.wait()
    assert len(await writer.submit(_records(logger, "k", 1))) == 1
    assert writer.starts == 2
    assert "the database writer exited (exit code -9); starting another" in caplog.text


async def test_a_group_cancelled_mid_exchange_leaves_no_stale_answer(
    writer: ProcessWriter, logger: UsageLogger
) -> None:
    task = writer.submit(_records(logger, "g", 2000))
    await asyncio.sleep(0)  # its frame is being written
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ids = await writer.submit(_records(logger, "h", 1))  # its answer, not the dropped one's
    stored = logger.store.get(ids[0])
    assert stored is not None and stored.query == "h 0"


async def test_a_failure_no_retry_mends_is_reported_as_such(
    writer: ProcessWriter, logger: UsageLogger, db_path: Path
) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute(BROKEN_TRIGGER)
    with pytest.raises(WriterFailedError, match="boom"):
        await writer.submit(_records(logger, "i", 1))


async def test_close_waits_for_the_child_to_exit(db_path: Path, logger: UsageLogger) -> None:
    writer = ProcessWriter(str(db_path))
    await writer.submit(_records(logger, "j", 5))  # started by its first group
    child = _process(writer)
    await writer.close()
    assert await child.wait() == 0
    assert logger.get_statistics()["total"] == 5


async def test_an_unreachable_database_is_unavailable_and_its_password_is_not_shown() -> None:
    writer = ProcessWriter(unreachable_url(password="hunter2-secret"), retry_seconds=0.5)
    with pytest.raises(StoreUnavailableError) as caught:
        await writer.start()
    assert "hunter2-secret" not in str(caught.value)
    assert writer._child is None


async def test_a_store_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    writer = ProcessWriter(str(tmp_path))  # a directory
    with pytest.raises(WriterFailedError, match="it is a directory"):
        await writer.start()


@pytest.mark.skipif(sys.platform != "linux", reason="scheduling policies are Linux's")
async def test_the_child_runs_as_a_batch_task(writer: ProcessWriter) -> None:
    """Woken with a group, it must not preempt the event loop that handed it over."""
    child = _process(writer)
    assert os.sched_getscheduler(child.pid) == os.SCHED_BATCH


async def test_an_answer_out_of_turn_stops_the_child_rather_than_mismatch_answers() -> None:
    """A frame no group waits for: the stream can no longer be trusted."""
    speaker = (
        "import pickle, struct, sys, time\n"
        "data = pickle.dumps(('ok', ['nobody-asked']))\n"
        "sys.stdout.buffer.write(struct.pack('<I', len(data)) + data)\n"
        "sys.stdout.flush()\n"
        "time.sleep(60)\n"
    )
    loop = asyncio.get_running_loop()
    _, protocol = await loop.subprocess_exec(
        lambda: _ChildProtocol(loop), sys.executable, "-c", speaker, stdout=subprocess.PIPE
    )
    assert await asyncio.wait_for(protocol.finished, timeout=20) == -signal.SIGKILL
    assert protocol.broken


async def test_a_child_that_closes_its_output_but_lingers_is_killed_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It can no longer answer: the groups it holds must not wait for it forever."""
    monkeypatch.setattr(writer_process, "EXIT_GRACE_S", 0.2)
    lingerer = "import os, time\nos.close(1)\ntime.sleep(60)\n"
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ChildProtocol(loop), sys.executable, "-c", lingerer,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    held = _Child(transport, protocol).send(b"\x00\x00\x00\x00")
    assert await asyncio.wait_for(protocol.finished, timeout=20) == -signal.SIGKILL
    with pytest.raises(StoreUnavailableError, match="stopped"):
        await held


def test_startup_objects_are_left_out_of_garbage_collection() -> None:
    gc.unfreeze()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0  # what exists now is never walked again
    finally:
        gc.unfreeze()
