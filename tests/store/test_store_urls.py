"""A database URL that cannot be used gets an error that says why, at once, and that
does not repeat the password."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from afs.continuous import LoopConfig, UsageLogger
from afs.continuous.cli import main
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


HOSTILE = [
    "postgresql://u:s3cret@[db/usage",  # the parser would quote the text around its fault
    "postgresql://u:a s3cret@127.0.0.1:1/usage",
    "postgresql://u:s3/cret@127.0.0.1:1/usage",  # unencoded '/': the host moves into the path
    "postgresql://u:s3@cret@127.0.0.1:1/usage",  # unencoded '@'
    "postgres://u:s3%cret@127.0.0.1:1/usage",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_a_malformed_url_says_so_without_any_piece_of_the_password(url: str) -> None:
    with pytest.raises(StoreUnavailableError, match=r"malformed URL|cannot connect") as caught:
        UsageLogger(url=url)
    for piece in ("s3cret", "cret", "s3"):
        assert piece not in str(caught.value)


@pytest.mark.parametrize(
    "target",
    [*HOSTILE, "mysql://u:s3cret@db/usage", "host=127.0.0.1 port=1 password=s3cret",
     "dbname=usage password='s3 cret'", "mysql://u:s3/cr@et@db/usage"],
)  # fmt: skip
@pytest.mark.parametrize("how", ["--db", "AFS_DATABASE_URL"])
def test_the_command_line_never_repeats_a_password(
    target: str,
    how: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    if how == "--db":
        code = main(["--db", target, "stats"])
    else:
        monkeypatch.setenv("AFS_DATABASE_URL", target)
        code = main(["stats"])
    error = capsys.readouterr().err
    assert code != 0 and error.startswith("afs-continuous: error:")
    for piece in ("s3cret", "cret", "s3 "):
        assert piece not in error
    assert list(work.iterdir()) == []  # no SQLite file named after a connection string
