"""A collector served over real sockets, on a SQLite file or a throwaway PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from afs.continuous import UsageLogger
from afs.continuous.collector import Collector, CollectorSettings

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

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
        collector = Collector(usage, CollectorSettings(**settings))
        app = collector.app(authenticate=authenticate, kserve_only=kserve_only)
        try:
            async with TestClient(TestServer(app)) as client:
                yield client, collector
        finally:
            collector.close()
            if own:
                usage.close()

    return running
