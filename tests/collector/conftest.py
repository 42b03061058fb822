"""A collector served over real sockets, on a SQLite file or a throwaway PostgreSQL,
writing through its writer process as the command does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from afs.continuous import UsageLogger
from afs.continuous.collector import Collector, CollectorSettings
from afs.continuous.collector.writer_process import ProcessWriter

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: makes every insert fail in a way no retry mends: a fault of ours, as far as clients know
BROKEN_TRIGGER = (
    "CREATE TRIGGER broken BEFORE INSERT ON usage BEGIN SELECT RAISE(ABORT, 'boom'); END"
)

Serve = Callable[..., AbstractAsyncContextManager[tuple[TestClient[Any, Any], Collector]]]


@pytest.fixture
def serve(tmp_path: Path) -> Serve:
    """``async with serve(**settings) as (client, collector)``: a running collector."""

    @asynccontextmanager
    async def running(
        *, logger: UsageLogger | None = None, authenticate: bool = True,
        kserve_only: bool = False, **settings: Any,
    ) -> AsyncIterator[tuple[TestClient[Any, Any], Collector]]:  # fmt: skip
        own = logger is None
        usage = logger if logger is not None else UsageLogger(tmp_path / "usage.db")
        settings.setdefault("token", TOKEN)
        writer = ProcessWriter(str(usage.db_path))  # the one `afs-continuous collect` uses
        collector = Collector(usage, CollectorSettings(**settings), writer=writer)
        app = collector.app(authenticate=authenticate, kserve_only=kserve_only)
        await collector.start()
        try:
            async with TestClient(TestServer(app)) as client:
                yield client, collector
        finally:
            await collector.stop_writing()
            collector.close()
            if own:
                usage.close()

    return running
