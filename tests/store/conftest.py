"""Store fixtures, parametrised by backend so every backend meets the same tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from afs.continuous.store import UsageStore, open_store
from tests.postgres_server import fresh_schema

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "store.db")
    else:
        with fresh_schema() as url:
            yield url


@pytest.fixture
def store(store_target: str) -> Iterator[UsageStore]:
    opened = open_store(store_target)
    yield opened
    opened.close()
