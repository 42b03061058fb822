"""One redactor per configuration for the whole session: building Presidio's analyzer
takes about a second."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from afs.continuous.privacy import RedactionConfig, Redactor

KEY = "a-redaction-key-of-32-characters"


@pytest.fixture(scope="session")
def redactor() -> Redactor:
    return Redactor()


@pytest.fixture
def hash_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AFS_REDACTION_KEY", KEY)
    yield KEY


@pytest.fixture
def hashing(hash_key: str) -> Redactor:
    return Redactor(RedactionConfig(operator="hash"))


# both stores, as the store tests have them
from tests.store.conftest import store_target as store_target  # noqa: E402
