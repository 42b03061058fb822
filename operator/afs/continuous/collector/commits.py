"""Group commit: the records of concurrent requests written in one transaction.

A collector under load answers many small requests at once. Written one transaction
each, every request pays a commit and a hop to a worker thread, and the event loop
waits on the interpreter lock while the worker checks records. Here the loop checks each
request's records itself, then queues them; at the end of the loop's turn everything
queued is handed as one group to the
:class:`~afs.continuous.collector.writer.StoreWriter`, which commits it in one
transaction (in a process of its own under ``afs-continuous collect``), and what queues
while the writer holds as many groups as it takes goes when one is answered. No task
sits in between: a group's answer settles its requests' futures in the callback that
receives it. Every request is answered only after the transaction holding its records
has committed.

A group the store refuses for a reason that may pass (the database unreachable or
locked) fails every request in it: each answers 503 and its client retries. A refusal
that belongs to one record (a supplied id that exists already) is found by writing the
group's requests one by one, so it fails that request alone.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from afs.continuous.buffered import is_transient
from afs.continuous.collector.writer import StoreWriter
from afs.continuous.records import RecordRow

#: records written in one transaction at most; more wait for the next
MAX_GROUP_RECORDS = 20_000


Request = tuple[list[RecordRow], asyncio.Future[list[str]]]


class GroupCommitter:
    def __init__(
        self,
        writer: StoreWriter,
        *,
        transient: Callable[[BaseException], bool] = is_transient,
        max_records: int = MAX_GROUP_RECORDS,
    ) -> None:
        self.writer = writer
        self._transient = transient
        self._max_records = max_records
        self._pending: list[Request] = []
        self._in_flight = 0  # groups handed to the writer and not answered: at most its in_flight
        self._send_soon: asyncio.Handle | None = None
        self._sorting: set[asyncio.Task[None]] = set()  # groups written request by request
        self.groups = 0  # transactions written: how well requests are being grouped

    async def commit(self, rows: list[RecordRow]) -> list[str]:
        """Write ``rows`` (checked records) with whatever else is queued; their ids.

        A request cancelled meanwhile cancels only its own future: its records are still
        written with their group."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[str]] = loop.create_future()
        self._pending.append((rows, future))
        if self._send_soon is None and self._in_flight < self.writer.in_flight:
            # after this turn of the loop: the other requests read in it join the group
            self._send_soon = loop.call_soon(self._send)
        return await future

    def _send(self) -> None:
        """Hand queued requests to the writer, a group at a time, while it takes more."""
        self._send_soon = None
        while self._pending and self._in_flight < self.writer.in_flight:
            group = self._take()
            try:
                answer = self.writer.submit([row for part, _ in group for row in part])
            except Exception as exc:  # nothing was handed over: the group fails whole
                for _, future in group:
                    _fail(future, exc)
                continue
            self._in_flight += 1
            answer.add_done_callback(functools.partial(self._answered, group))

    def _answered(self, group: list[Request], done: asyncio.Future[list[str]]) -> None:
        self._in_flight -= 1
        if done.cancelled():  # the loop is shutting down: so are its requests
            for _, future in group:
                future.cancel()
        elif (exc := done.exception()) is None:
            self.groups += 1
            ids, start = done.result(), 0
            for part, future in group:
                if not future.done():
                    future.set_result(ids[start : start + len(part)])
                start += len(part)
        elif self._transient(exc) or len(group) == 1:
            for _, future in group:
                _fail(future, exc)
        else:  # a refusal of one request's: found by writing them one by one
            self._in_flight += 1
            task = asyncio.ensure_future(self._one_by_one(group))
            self._sorting.add(task)
            task.add_done_callback(self._sorted)
        self._send()

    def _sorted(self, task: asyncio.Task[None]) -> None:
        self._sorting.discard(task)
        self._in_flight -= 1
        self._send()

    def _take(self) -> list[Request]:
        taken, count = 0, 0
        for rows, _ in self._pending:
            if taken and count + len(rows) > self._max_records:
                break
            taken += 1
            count += len(rows)
        group, self._pending = self._pending[:taken], self._pending[taken:]
        return group

    async def _one_by_one(self, group: list[Request]) -> None:
        for rows, future in group:
            try:
                ids = await self.writer.submit(rows)
            except Exception as exc:
                _fail(future, exc)
                continue
            self.groups += 1
            if not future.done():
                future.set_result(ids)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
