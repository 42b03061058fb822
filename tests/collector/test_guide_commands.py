"""docs/collector.md's commands, run as written: the start command in a fresh directory,
then its curl commands with the files they name made from the guide's own examples. The
guide's in-cluster address reaches the local collector through curl's own configuration
(a ``.curlrc`` with ``connect-to``), so not one character of a command is changed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from afs.continuous import UsageLogger
from tests.docs_examples import ROOT, code_blocks, section

DOC = ROOT / "docs" / "collector.md"
CLUSTER_ADDRESS = "afs-continuous-collector.afs-system:8080"


def _wait_healthy(url: str, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the collector exited at start"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the collector never answered /healthz")


def test_the_start_command_and_the_curl_commands_run_as_written(tmp_path: Path) -> None:
    start = code_blocks(DOC.read_text(encoding="utf-8"), "bash")[0].strip().splitlines()
    native = section(DOC, "Native API")
    record, _feedback = code_blocks(native, "json")
    (records,) = code_blocks(native, "ndjson")
    posts = code_blocks(native, "bash")
    (tmp_path / "record.json").write_text(record)
    (tmp_path / "records.ndjson").write_text(records)
    host_port = start[1].split("--host ", 1)[1].replace(" --port ", ":")
    (tmp_path / ".curlrc").write_text(f"connect-to = {CLUSTER_ADDRESS}:{host_port}\n")
    database = tmp_path / "usage.db"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path), "CURL_HOME": str(tmp_path), "AFS_DATABASE_URL": str(database),
    }  # fmt: skip
    subprocess.run(["bash", "-euo", "pipefail", "-c", start[0]], cwd=tmp_path, env=env, check=True)
    collector = subprocess.Popen(
        ["bash", "-c", f"exec {start[1]}"], cwd=tmp_path, env=env, text=True,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_healthy(f"http://{host_port}/healthz", collector)
        answers = [
            subprocess.run(
                ["bash", "-euo", "pipefail", "-c", post], cwd=tmp_path, env=env,
                capture_output=True, text=True, check=True,
            ).stdout
            for post in posts
        ]  # fmt: skip
    finally:
        collector.send_signal(signal.SIGTERM)
        _, log = collector.communicate(timeout=30)
    assert collector.returncode == 0, log
    assert [len(json.loads(a)["ids"]) for a in answers] == [1, 2]
    with UsageLogger(database) as logger:
        stored = {r.query for r in logger.get_records(limit=None)}
    assert stored == {"What is 65816 assembly?", "Hi", "Thanks"}
    assert "Traceback" not in log
