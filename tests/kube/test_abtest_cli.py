"""``afs-continuous abtest``: through the real ``kubernetes`` client against the emulator,
with a kubeconfig as a user has one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import kmock
import pytest

from afs.continuous.cli import main
from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION
from tests.kube.emulator import ApiServerEmulator
from tests.kube.test_operator_scenarios import NAMESPACE, _register

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(60)]


def _test(name: str, phase: str | None, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ABTest",
        "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": "1"},
        "spec": {"champion": {"modelVersion": "v1"}, "challenger": {"modelVersion": name},
                 "traffic": {"provider": "gateway-api",
                             "targetRef": {"apiVersion": "gateway.networking.k8s.io/v1",
                                           "kind": "HTTPRoute", "name": "r"}},
                 "steps": [{"weight": 10}, {"weight": 50}], "promotion": "manual"},
        "status": {"phase": phase, **status} if phase else {},
    }  # fmt: skip


@pytest.fixture
def cluster(
    kmock: kmock.KubernetesEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> kmock.KubernetesEmulator:
    _register(kmock)
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "tester", "user": {"token": "x"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester",
                                                       "namespace": NAMESPACE}}],
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    evidence = {"arms": {"champion": {"requests": 300, "rated": 300, "mean_quality": 0.6},
                         "challenger": {"requests": 310, "rated": 300, "mean_quality": 0.8}},
                "quality": {"estimate": 0.2, "lower": 0.18, "upper": 0.22}}  # fmt: skip
    tests = [
        _test("waiting", "WaitingPromotion", step=1, verdict="PROMOTE", evidence=evidence,
              weights={"champion": 50, "challenger": 50}, reason="quality proven higher"),
        _test("running", "Running", step=0, weights={"champion": 90, "challenger": 10}),
        _test("done", "Promoted", verdict="PROMOTE", weights={"champion": 0, "challenger": 100}),
        _test("new", None),
    ]  # fmt: skip
    for test in tests:
        kmock.objects[f"{GROUP}/{VERSION}/abtests", NAMESPACE, test["metadata"]["name"]] = test
    return kmock


async def _run(*argv: str) -> int:
    return await asyncio.to_thread(main, ["abtest", *argv])


def _action(emulator: kmock.KubernetesEmulator, name: str) -> str | None:
    obj = emulator.objects[f"{GROUP}/{VERSION}/abtests", NAMESPACE, name]
    return (obj.get("metadata", {}).get("annotations") or {}).get("continuous.afs.dev/action")


async def test_list_shows_every_test_of_the_namespace(
    cluster: kmock.KubernetesEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _run("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAMESPACE", "NAME", "PHASE", "STEP", "WEIGHT", "VERDICT", "CHAMPION", "CHALLENGER"
    ]  # fmt: skip
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert rows["waiting"][2:6] == ["WaitingPromotion", "2/2", "50%", "PROMOTE"]
    assert rows["new"][2:6] == ["Pending", "-", "-", "-"]
    assert await _run("list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert {t["name"]: t["phase"] for t in listed} == {
        "waiting": "WaitingPromotion", "running": "Running", "done": "Promoted", "new": "Pending"
    }  # fmt: skip


async def test_status_shows_the_evidence(
    cluster: kmock.KubernetesEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _run("status", "waiting", "-n", NAMESPACE) == 0
    out = capsys.readouterr().out
    assert "ABTest ml/waiting: WaitingPromotion" in out
    assert "challenger 310 requests, 300 rated, mean quality 0.8000" in out
    assert "quality difference +0.2000 [+0.1800, +0.2200]" in out
    assert await _run("status", "waiting", "--json") == 0
    assert json.loads(capsys.readouterr().out)["status"]["verdict"] == "PROMOTE"


@pytest.mark.parametrize(
    ("name", "action", "said"),
    [
        ("waiting", "promote", "it happens at the next reconcile"),
        ("running", "promote", "approved in advance"),
        ("running", "abort", "abort of ml/running requested"),
    ],
)
async def test_promote_and_abort_set_the_action_the_operator_consumes(
    cluster: kmock.KubernetesEmulator,
    capsys: pytest.CaptureFixture[str],
    name: str,
    action: str,
    said: str,
) -> None:
    assert await _run(action, name) == 0
    assert said in capsys.readouterr().out
    assert _action(cluster, name) == action


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("promote", "done"), "abtest ml/done has ended (Promoted); nothing to promote"),
        (("abort", "nope"), "abtest ml/nope not found"),
        (("status", "nope", "-n", "other"), "abtest other/nope not found"),
    ],
)
async def test_refusals_say_why(
    cluster: kmock.KubernetesEmulator,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    error: str,
) -> None:
    assert await _run(*argv) == 1
    assert capsys.readouterr().err.strip() == f"afs-continuous abtest: error: {error}"
    assert _action(cluster, "done") is None


def test_without_a_cluster_the_command_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert main(["abtest", "list"]) == 1
    assert "afs-continuous abtest: error: no cluster to talk to" in capsys.readouterr().err


async def test_report_draws_a_test_of_the_cluster_from_its_records(
    cluster: kmock.KubernetesEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ABTest's epochs and settings from the cluster, its records from --db."""
    import random
    from datetime import UTC, datetime, timedelta

    from afs.continuous import UsageLogger

    start = datetime(2026, 11, 20, tzinfo=UTC)
    rng = random.Random(5)
    records = []
    for minute in range(0, 24 * 60, 2):
        share = 0.1 if minute < 12 * 60 else 0.5
        model = "reported" if rng.random() < share else "v1"
        quality = rng.betavariate(8, 2) if model == "reported" else rng.betavariate(6, 4)
        records.append({"query": f"q{minute}", "response": "a", "model": model,
                        "quality_score": round(quality, 4), "latency_ms": 200.0,
                        "user_feedback": 1 if quality > 0.6 else -1,
                        "timestamp": start + timedelta(minutes=minute)})  # fmt: skip
    db = tmp_path / "usage.db"
    with UsageLogger(str(db)) as logger:
        logger.log_many(records)
    test = _test(
        "reported",
        "Promoted",
        step=1,
        verdict="PROMOTE",
        started="2026-11-20T00:00:00Z",
        finished="2026-11-21T00:00:00Z",
        epochs=[
            {
                "step": 0,
                "weights": {"champion": 90, "challenger": 10},
                "applied": "2026-11-20T00:00:00Z",
                "start": "2026-11-20T00:00:00Z",
            },
            {
                "step": 1,
                "weights": {"champion": 50, "challenger": 50},
                "applied": "2026-11-20T12:00:00Z",
                "start": "2026-11-20T12:00:00Z",
            },
        ],
    )
    cluster.objects[f"{GROUP}/{VERSION}/abtests", NAMESPACE, "reported"] = test
    out = tmp_path / "out"
    argv = ("report", "reported", "--db", str(db), "--out", str(out), "--points", "8", "--json")
    assert await _run(*argv) == 0, capsys.readouterr().err
    written = json.loads(capsys.readouterr().out)
    page = Path(written["html"]).read_text()
    assert "<title>reported</title>" in page and "(Promoted)" in page
    assert Path(written["png"]).stat().st_size > 10_000


async def test_a_report_of_a_test_that_never_started_says_so(
    cluster: kmock.KubernetesEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _run("report", "new", "--db", str(tmp_path / "x.db")) == 1
    assert "abtest ml/new has not started" in capsys.readouterr().err
