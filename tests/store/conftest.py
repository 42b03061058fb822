"""Store fixtures, parametrised by backend so every backend meets the same tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from afs.continuous.store import UsageStore, open_store

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


@pytest.fixture
def store(store_target: str) -> Iterator[UsageStore]:
    opened = open_store(store_target)
    yield opened
    opened.close()
