"""A database URL that cannot be used gets an error that says why, at once, and that
does not repeat the password."""

from __future__ import annotations

import re
import time

import pytest

from afs.continuous import LoopConfig, UsageLogger
from afs.continuous.errors import InvalidFieldError, StoreUnavailableError
from tests.postgres_server import unreachable_url


@pytest.mark.parametrize(
    "url", ["mysql://u:s3cret@db/usage", "http://u:s3cret@db/?password=s3cret"]
)
def test_an_unknown_scheme_is_refused_without_the_password(url: str) -> None:
    with pytest.raises(InvalidFieldError, match="postgresql:// or sqlite:///") as caught:
        UsageLogger(url=url)
    assert "s3cret" not in str(caught.value)
    assert "u:***@db" in str(caught.value)


def test_a_loop_config_with_a_wrong_url_is_refused_without_the_password() -> None:
    with pytest.raises(ValueError, match="database_url must be a postgresql:// URL") as caught:
        LoopConfig(database_url="mysql://u:s3cret@db/usage")
    assert "s3cret" not in str(caught.value)


def test_an_unreachable_server_fails_at_once_with_the_reason() -> None:
    url = unreachable_url(password="s3cret")
    started = time.monotonic()
    with pytest.raises(
        StoreUnavailableError, match=re.escape("cannot connect to PostgreSQL at u@127.0.0.1/usage")
    ) as caught:
        UsageLogger(url=url)
    assert time.monotonic() - started < 10  # not the pool's 30 s of silent retries
    assert "refused" in str(caught.value).lower()
    assert "s3cret" not in str(caught.value)


def test_a_malformed_url_names_the_problem_without_the_password() -> None:
    with pytest.raises(StoreUnavailableError, match="IPv6") as caught:
        UsageLogger(url="postgresql://u:s3cret@[db/usage")
    assert "s3cret" not in str(caught.value)
