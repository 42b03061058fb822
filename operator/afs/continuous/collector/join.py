"""Pairing KServe's request and response events, which arrive as two posts.

KServe's payload logger sends a request event and a response event with the same
``ce-id``, in either order, possibly more than once. The buffer holds the first half
until the second comes, for at most ``ttl_s``; a half never completed is counted as
expired, never stored as a record. It is bounded: when full, :class:`JoinBufferFullError`
lets the caller answer 503 instead of growing without limit. Ids completed recently are
remembered for the same TTL, so a resent half is recognised as a duplicate.

Not thread-safe on purpose: the collector calls it from its one event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Kind = Literal["request", "response"]


class JoinBufferFullError(Exception):
    """``max_pending`` halves are waiting for their other halves."""


@dataclass(frozen=True)
class Half:
    """One event: which half, its parsed body, its time, and the attributes that name
    the service it came from."""

    kind: Kind
    body: Any
    time: datetime | None
    attributes: dict[str, str]


@dataclass(frozen=True)
class Pair:
    request: Half
    response: Half


class JoinBuffer:
    def __init__(
        self,
        *,
        max_pending: int = 10_000,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending < 1 or ttl_s <= 0:
            raise ValueError("max_pending must be >= 1 and ttl_s > 0")
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self._clock = clock
        self._pending: OrderedDict[str, tuple[float, Half]] = OrderedDict()
        self._completed: OrderedDict[str, float] = OrderedDict()
        self.expired = 0
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._pending)

    def offer(self, key: str, half: Half) -> Pair | Literal["waiting", "duplicate"]:
        """The completed pair when ``half`` is the missing one; else whether it waits for
        its other half or repeats one seen (counted in :attr:`duplicates`)."""
        now = self._clock()
        self.expire(now)
        if key in self._completed:
            self.duplicates += 1
            return "duplicate"
        waiting = self._pending.get(key)
        if waiting is not None:
            other = waiting[1]
            if other.kind == half.kind:
                self.duplicates += 1
                return "duplicate"
            del self._pending[key]
            self._completed[key] = now
            if len(self._completed) > self.max_pending:  # bounded like the pending halves
                self._completed.popitem(last=False)
            request, response = (other, half) if half.kind == "response" else (half, other)
            return Pair(request, response)
        if len(self._pending) >= self.max_pending:
            raise JoinBufferFullError(
                f"{len(self._pending)} events are waiting for their other half "
                f"(max {self.max_pending})"
            )
        self._pending[key] = (now, half)
        return "waiting"

    def forget(self, key: str) -> None:
        """Let ``key`` be offered again (its record could not be stored)."""
        self._completed.pop(key, None)

    def expire(self, now: float | None = None) -> int:
        """Drop halves older than the TTL; return how many were dropped."""
        now = self._clock() if now is None else now
        cutoff = now - self.ttl_s
        dropped = 0
        while self._pending:
            key, (arrived, _half) = next(iter(self._pending.items()))
            if arrived > cutoff:
                break
            del self._pending[key]
            dropped += 1
        while self._completed and next(iter(self._completed.values())) <= cutoff:
            self._completed.popitem(last=False)
        self.expired += dropped
        return dropped
