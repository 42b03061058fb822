"""Group commit: the records of concurrent requests written in one transaction.

A collector under load answers many small requests at once. Written one transaction
each, every request pays a commit and a hop to a worker thread, and the event loop
waits on the interpreter lock while the worker checks records. Here the loop checks each
request's records itself, then queues them; a writing task takes everything queued and
hands it to the :class:`~afs.continuous.collector.writer.StoreWriter`, which commits it
in one transaction (in a process of its own under ``afs-continuous collect``). As many
tasks write at once as the writer takes groups in flight (one for a thread).
Every request is answered only after the transaction holding its records has committed.

A group the store refuses for a reason that may pass (the database unreachable or
locked) fails every request in it: each answers 503 and its client retries. A refusal
that belongs to one record (a supplied id that exists already) is found by writing the
group's requests one by one, so it fails that request alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from afs.continuous.buffered import is_transient
from afs.continuous.collector.writer import StoreWriter
from afs.continuous.records import UsageRecord

#: records written in one transaction at most; more wait for the next
MAX_GROUP_RECORDS = 20_000


class GroupCommitter:
    def __init__(
        self,
        writer: StoreWriter,
        *,
        transient: Callable[[BaseException], bool] = is_transient,
        max_records: int = MAX_GROUP_RECORDS,
    ) -> None:
        self.writer = writer
        self._writing: set[asyncio.Task[None]] = set()  # at most writer.in_flight
        self._transient = transient
        self._max_records = max_records
        self._pending: list[tuple[list[UsageRecord], asyncio.Future[list[str]]]] = []
        self.groups = 0  # transactions written: how well requests are being grouped

    async def commit(self, records: list[UsageRecord]) -> list[str]:
        """Write ``records`` (checked already) with whatever else is queued; their ids."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._pending.append((records, future))
        if len(self._writing) < self.writer.in_flight:
            task = asyncio.create_task(self._write_all())
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)
        return await asyncio.shield(future)

    async def _write_all(self) -> None:
        while self._pending:
            group = self._take()
            records = [r for part, _ in group for r in part]
            given = [r.id for r in records]  # the store fills in ids; a retry needs these
            try:
                ids = await self.writer.insert(records)
            except Exception as exc:
                if self._transient(exc) or len(group) == 1:
                    for _, future in group:
                        _fail(future, exc)
                else:
                    for record, record_id in zip(records, given, strict=True):
                        record.id = record_id
                    await self._one_by_one(group)
                continue
            self.groups += 1
            start = 0
            for part, future in group:
                if not future.done():
                    future.set_result(ids[start : start + len(part)])
                start += len(part)

    def _take(self) -> list[tuple[list[UsageRecord], asyncio.Future[list[str]]]]:
        taken, count = 0, 0
        for records, _ in self._pending:
            if taken and count + len(records) > self._max_records:
                break
            taken += 1
            count += len(records)
        group, self._pending = self._pending[:taken], self._pending[taken:]
        return group

    async def _one_by_one(
        self, group: list[tuple[list[UsageRecord], asyncio.Future[list[str]]]]
    ) -> None:
        for records, future in group:
            try:
                ids = await self.writer.insert(records)
            except Exception as exc:
                _fail(future, exc)
                continue
            self.groups += 1
            if not future.done():
                future.set_result(ids)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
