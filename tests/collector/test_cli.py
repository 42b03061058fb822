"""``afs-continuous collect`` as a process: refusing to start unsafely, serving, and
flushing what it queued when it is stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from afs.continuous import UsageLogger
from afs.continuous.cli import main
from afs.continuous.collector.cli import build_parser, open_logger

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no token: give --token-file"),
        (["--no-auth", "--token-file", "t"], "not both"),
        (["--token-file", "missing-file"], "cannot read the token file"),
        (["--no-auth", "--join-ttl", "0"], "--join-ttl: must be a number of seconds more than 0"),
        (["--no-auth", "--port", "9000", "--kserve-port", "9000"], "must differ"),
    ],
)
def test_unsafe_or_impossible_starts_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    try:
        code = main(["collect", "--db", str(tmp_path / "u.db"), *argv])
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_short_token_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("short\n")
    assert main(["collect", "--db", str(tmp_path / "u.db"), "--token-file", str(token)]) == 2
    assert "use at least 16" in capsys.readouterr().err


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--token-file",
        "--no-auth",
        "--kserve-port",
        "--max-body-bytes",
        "--score",
        "--max-records",
        "--join-ttl",
        "--async-max-pending",
        "--retry-after",
    ):
        assert option in text  # fmt: skip


@pytest.mark.parametrize(("choice", "scored"), [("heuristic", True), ("none", False)])
def test_score_heuristic_scores_what_arrives_unscored(
    tmp_path: Path, choice: str, scored: bool
) -> None:
    args = build_parser().parse_args(["--db", str(tmp_path / "u.db"), "--score", choice])
    with open_logger(args) as logger:
        record_id = logger.log_many([{"query": "What is the SNES CPU?", "model": "m",
                                      "response": "The 65C816, a 16-bit 6502."}])[0]  # fmt: skip
        stored = logger.store.get(record_id)
    assert stored is not None and (stored.quality_score is not None) == scored


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_service_runs_and_sigterm_flushes_what_it_queued(tmp_path: Path) -> None:
    token, db, port = tmp_path / "token", tmp_path / "usage.db", _free_port()
    token.write_text(TOKEN + "\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "afs.continuous", "collect", "--db", str(db), "--host",
         "127.0.0.1", "--port", str(port), "--token-file", str(token)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stderr is not None
        assert "listening on" in process.stderr.readline()
        base = f"http://127.0.0.1:{port}"
        rows = "".join(
            json.dumps({"query": f"q{i}", "response": "r", "model": "m"}) + "\n" for i in range(200)
        )
        status, body = _post(f"{base}/v1/usage?async=1", rows.encode(), "application/x-ndjson")
        assert (status, body["queued"]) == (202, True)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    with UsageLogger(db) as logger:
        assert logger.get_statistics()["total"] == 200


def test_the_first_request_after_start_is_answered(tmp_path: Path) -> None:
    """The port is open once the line says so (no sleep needed by a probe or a test)."""
    db, port = tmp_path / "usage.db", _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "afs.continuous", "collect", "--db", str(db), "--host",
         "127.0.0.1", "--port", str(port), "--no-auth"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        assert "NO AUTHENTICATION" in process.stderr.readline()
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
            assert answer.status == 200
        assert time.monotonic() - started < 10
    finally:
        process.terminate()
        process.wait(timeout=30)
