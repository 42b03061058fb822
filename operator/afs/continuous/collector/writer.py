"""Where the collector's checked records go to be committed: one interface, two writers.

:class:`ThreadWriter` calls the store in a worker thread of the collector's own process:
what an embedded collector (tests, a notebook) needs, with nothing to start or stop.
:class:`~afs.continuous.collector.writer_process.ProcessWriter` hands the records to a
process of its own; ``afs-continuous collect`` uses it (why: that module's docstring).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from afs.continuous.records import RecordRow, records_from_rows
from afs.continuous.store import UsageStore


class StoreWriter(Protocol):
    #: groups it may be handed before the first is committed (they commit in order)
    in_flight: int
    #: writers started so far: more than one means one died and was replaced
    starts: int

    async def start(self) -> None:
        """Be ready to write (a process writer starts its child and opens its store)."""
        ...

    def submit(self, rows: list[RecordRow]) -> asyncio.Future[list[str]]:
        """Commit ``rows`` (checked records, from
        :func:`~afs.continuous.records.normalized_rows`; their dedupe hashes are made
        here, off the event loop) in one transaction: a future of their ids in order. A
        supplied id that exists already fails it with InvalidFieldError; a database that
        cannot be reached, with an error :func:`~afs.continuous.buffered.is_transient`
        knows. A future, not a coroutine: the answer reaches its requests without first
        waiting a turn of the event loop for a task to wake."""
        ...

    async def close(self) -> None:
        """Stop once the write in progress (if any) has answered."""
        ...


class ThreadWriter:
    """The store's ``insert`` in a worker thread, where SQLite and libpq spend most of
    their time outside the interpreter lock."""

    in_flight = 1  # one connection: one transaction at a time
    starts = 1  # nothing of its own to die

    def __init__(self, store: UsageStore) -> None:
        self.store = store

    async def start(self) -> None:
        """Nothing to start: the store is open."""

    def submit(self, rows: list[RecordRow]) -> asyncio.Future[list[str]]:
        return asyncio.ensure_future(asyncio.to_thread(self._insert, rows))

    def _insert(self, rows: list[RecordRow]) -> list[str]:
        return self.store.insert(records_from_rows(rows))

    async def close(self) -> None:
        """Nothing of its own to stop: the store belongs to the caller."""
