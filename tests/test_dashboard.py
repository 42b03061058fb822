"""The Grafana dashboard: generated (never hand-edited), well formed, and every panel's
query answered with data by a real Prometheus that scraped the operator and the
collector while the whole loop ran (LearningLoop → Job → ModelVersion → ABTest →
Promoted, its traffic sent through the collector)."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import start_http_server

from afs.continuous import UsageLogger
from afs.continuous.collector import Collector, CollectorSettings
from afs.continuous.kube.metrics import OperatorMetrics
from tests.conftest import FakeClock
from tests.docs_examples import ROOT
from tests.kube.emulator import ApiServerEmulator
from tests.kube.test_abtest_scenarios import (
    GATEWAY,
    WHOLE_LOOP_PROMOTION,
    _counting,
    _create,
    _route,
    _status,
    _version,
    traffic_records,
)
from tests.kube.test_operator_scenarios import (
    NAMESPACE,
    _call,
    _eventually,
    _finish_job,
    _loop,
    _loop_manifest,
    _register,
    _setup as _setup_loop,
    operator,
)
from tests.postgres_server import fresh_schema

DASHBOARD: dict[str, Any] = json.loads((ROOT / "dashboards" / "afs-continuous.json").read_text())
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
QUERIES = [(p["title"], t["expr"]) for p in PANELS for t in p["targets"]]
PROMETHEUS = shutil.which("prometheus")


def test_every_panel_queries_prometheus_through_the_datasource_variable() -> None:
    assert DASHBOARD["uid"] == "afs-continuous"
    (variable,) = DASHBOARD["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource", "datasource", "prometheus"
    )  # fmt: skip
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)) and 0 not in ids
    for panel in PANELS:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs) and "" not in refs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _prometheus(tmp: Path, targets: dict[str, int]) -> Iterator[str]:
    """A real Prometheus scraping ``targets`` (job: port) every second; its URL."""
    assert PROMETHEUS is not None
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in targets.items()
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prometheus did not start: {process.stderr}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as answer:
        body = json.loads(answer.read())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


def _panels_without_data(prometheus: str) -> list[tuple[str, str]]:
    return [(title, expr) for title, expr in QUERIES if not _has_data(_query(prometheus, expr))]


def _until_every_panel_has_data(prometheus: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _panels_without_data(prometheus) and time.monotonic() < deadline:
        time.sleep(1)


@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus is not installed (apt-get install prometheus): the dashboard's "
    "queries are not run",
)
@pytest.mark.kmock(cls=ApiServerEmulator)
@pytest.mark.timeout(240)
async def test_every_panel_query_returns_data_from_a_real_prometheus(
    kmock: kmock.KubernetesEmulator, clock: FakeClock, tmp_path: Path
) -> None:
    _register(kmock)
    metrics = OperatorMetrics()  # this test's alone: nothing left by other tests counts
    operator_port = _free_port()
    server, thread = start_http_server(operator_port, addr="127.0.0.1", registry=metrics.registry)
    try:
        with fresh_schema() as usage_db:
            usage = UsageLogger(url=usage_db)
            collector = Collector(usage, CollectorSettings(token=None))
            ndjson = {"Content-Type": "application/x-ndjson"}

            async def send(records: list[dict[str, Any]]) -> None:
                body = "\n".join(json.dumps(r) for r in records)
                answer = await client.post("/v1/usage", data=body, headers=ndjson)
                assert answer.status == 200, await answer.text()

            async with TestClient(TestServer(collector.app(authenticate=False))) as client:
                assert client.port is not None
                targets = {"operator": operator_port, "collector": client.port}
                with _prometheus(tmp_path, targets) as prometheus:
                    # scraping starts a few seconds after Prometheus is ready: the counters
                    # must be seen at 0 before they move, or no rate can be taken
                    await _eventually(lambda: len(_query(prometheus, "up == 1")) == 2, timeout=30)
                    await send(traffic_records(
                        clock() - timedelta(hours=1), arms={"nayru-v1": (30, 0.9)}, hours=0.5
                    ))  # fmt: skip
                    refused = await client.post("/v1/usage", json={"query": "q"})
                    assert refused.status == 400
                    async with operator(kmock, clock=clock, metrics=metrics) as kube:
                        await _create(kube, "modelversions", _version("nayru-v1"))
                        route = _route(
                            {"name": "nayru-v1", "port": 80}, {"name": "nayru-run-1", "weight": 0}
                        )
                        await _call(
                            kube.custom.create_namespaced_custom_object, *GATEWAY[:2],
                            NAMESPACE, GATEWAY[2], route,
                        )  # fmt: skip
                        await _setup_loop(
                            kube, usage_db, _loop_manifest(promotion=WHOLE_LOOP_PROMOTION)
                        )
                        await _eventually(lambda: kube.get_job(NAMESPACE, "nayru-run-1"))
                        report = json.dumps({"modelUri": "s3://models/nayru/run-1"})
                        await _call(lambda: _finish_job(
                            kube, "nayru-run-1", succeeded=True, message=report
                        ))  # fmt: skip
                        start = await _counting(kube, "nayru-run-1")
                        await _eventually(lambda: _loop(kube)["status"]["phase"] == "Testing")
                        await send(traffic_records(
                            start, arms={"nayru-v1": (300, 0.6), "nayru-run-1": (300, 0.8)}
                        ))  # fmt: skip
                        clock.advance(hours=3)
                        await _eventually(
                            lambda: _status(kube, "nayru-run-1").get("phase") == "Promoted"
                        )
                    # activity after the scrapes are under way, so every rate has an
                    # increase between two samples even where a scrape was missed
                    await send(traffic_records(
                        clock(), arms={"nayru-run-1": (5, 0.8)}, hours=0.1
                    ))  # fmt: skip
                    # a scrape pipeline is eventually consistent: every panel must show
                    # data within the bound, and the last look says which did not
                    await asyncio.to_thread(_until_every_panel_has_data, prometheus, 30.0)
                    empty = _panels_without_data(prometheus)
            collector.close()
            usage.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert empty == [], empty
