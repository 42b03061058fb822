"""The collector's container as the chart starts it — its command and arguments, the token
file mounted from its Secret, the database URL from its Secret (a throwaway PostgreSQL) —
takes records, and a SIGTERM (what Kubernetes sends) loses nothing it acknowledged, the
records it only queued (``?async=1``) included."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import UsageLogger
from tests.image.conftest import Build
from tests.image.containers import ChartContainer, database_for_containers, free_port, podman
from tests.postgres_server import fresh_schema


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def _post(port: int, path: str, body: bytes, token: str, kind: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": kind},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait_ready(port: int, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    logs = podman("logs", name, check=False)
    raise AssertionError(f"the collector never became ready:\n{logs.stdout}{logs.stderr}")


def test_records_sent_are_all_kept_through_a_sigterm(
    built: Build, database: str, tmp_path: Path
) -> None:
    chart = ChartContainer.rendered("collector")
    token = secrets.token_hex(32)
    inside, mounts = database_for_containers(database)
    port, name = free_port(), f"afs-collector-{uuid.uuid4().hex[:8]}"
    arguments = chart.run_options(
        secrets={"usage-db": {"url": inside}, "collector-token": {"token": token}},
        scratch=tmp_path, published={"http": port},
        extra_mounts=mounts,
    )  # fmt: skip
    podman("run", "--detach", "--name", name, *arguments)
    acknowledged: list[str] = []
    try:
        _wait_ready(port, name)
        ndjson = "application/x-ndjson"
        for batch in range(5):
            lines = "\n".join(
                json.dumps({"query": f"q{batch}-{i}", "response": "a", "model": "nayru-v1"})
                for i in range(40)
            )
            status, answer = _post(port, "/v1/usage", lines.encode(), token, ndjson)
            assert status == 200, answer
            acknowledged += answer["ids"]
        queued = "\n".join(
            json.dumps({"query": f"late-{i}", "response": "a", "model": "nayru-v1"})
            for i in range(200)
        )
        status, answer = _post(port, "/v1/usage?async=1", queued.encode(), token, ndjson)
        assert status == 202 and answer["queued"], answer
        acknowledged += answer["ids"]
        status, _ = _post(port, "/v1/usage", b"{}", "wrong-token-0123456789", "application/json")
        assert status == 401
    finally:
        podman("stop", "--time", str(chart.pod["terminationGracePeriodSeconds"]), name)
        exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        logs = podman("logs", name, check=False).stderr
        podman("rm", "--force", name, check=False)
    assert exit_code == "0", logs
    assert "Traceback" not in logs, logs
    with UsageLogger(database) as logger:
        stored = {r.id for r in logger.get_records(limit=None)}
    assert len(acknowledged) == 400 and set(acknowledged) <= stored
