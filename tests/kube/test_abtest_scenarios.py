"""The ABTest controller end to end: the real kopf and ``kubernetes`` client against the
emulator with a Gateway API HTTPRoute, the arms' usage records in a real throwaway
PostgreSQL, and the clock injected so that hours pass when the test says so."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from datetime import datetime, timedelta
from typing import Any

import kmock
import pytest

from afs.continuous import UsageLogger
from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION
from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.routing import RECORD_ANNOTATION
from afs.continuous.timeutil import parse_timestamp
from tests.conftest import FakeClock
from tests.kube.emulator import ApiServerEmulator
from tests.kube.test_operator_scenarios import (
    METRICS,
    NAMESPACE,
    _call,
    _event_reasons,
    _eventually,
    _get_custom,
    _pruned_in_a_cluster,
    _register,
    operator,
)
from tests.postgres_server import fresh_schema

pytestmark = pytest.mark.kmock(cls=ApiServerEmulator)

GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")
TARGET = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "name": "nayru"}


def _route(*backends: dict[str, Any]) -> dict[str, Any]:
    """A route with a rule of its own (never touched) and the rule the arms share."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "nayru", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                 "backendRefs": [{"name": "admin", "port": 80}]},
                {"backendRefs": list(backends)},
            ],
        },
    }  # fmt: skip


ARMS = ({"name": "nayru-v1", "port": 80}, {"name": "nayru-v2", "port": 80, "weight": 0})


def _abtest(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "champion": {"modelVersion": "nayru-v1"},
        "challenger": {"modelVersion": "nayru-v2"},
        "traffic": {"provider": "gateway-api", "targetRef": TARGET},
        "steps": [{"weight": 50}],
        "database": {"urlSecretRef": {"name": "usage-db", "key": "url"}},
        "decision": {
            "minRequestsPerArm": 100, "minFeedbackPerArm": 20, "minDurationHours": 0,
            "maxDurationHours": 24,
        },
    }  # fmt: skip
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ABTest",
        "metadata": {"name": "nayru-v2", "namespace": NAMESPACE},
        "spec": body,
    }  # fmt: skip


def _version(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"model": "nayru", "version": name, "uri": f"s3://models/{name}"},
    }  # fmt: skip


async def _create(kube: KubeClient, plural: str, body: dict[str, Any]) -> None:
    await _call(
        kube.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE, plural, body
    )


async def _setup(
    kube: KubeClient,
    url: str,
    *,
    test: dict[str, Any] | None = None,
    route: dict[str, Any] | None = None,
    versions: tuple[str, ...] = ("nayru-v1", "nayru-v2"),
) -> None:
    secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "usage-db", "namespace": NAMESPACE},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }  # fmt: skip
    await _call(kube.core.create_namespaced_secret, NAMESPACE, secret)
    for name in versions:
        await _create(kube, "modelversions", _version(name))
    await _call(
        kube.custom.create_namespaced_custom_object, *GATEWAY[:2], NAMESPACE, GATEWAY[2],
        route or _route(*ARMS),
    )  # fmt: skip
    await _create(kube, "abtests", test or _abtest())


def _test(kube: KubeClient, name: str = "nayru-v2") -> dict[str, Any]:
    return _get_custom(kube, "abtests", name) or {}


def _status(kube: KubeClient, name: str = "nayru-v2") -> dict[str, Any]:
    return _test(kube, name).get("status") or {}


def _live_route(kube: KubeClient) -> dict[str, Any]:
    route: dict[str, Any] = kube.custom.get_namespaced_custom_object(
        *GATEWAY[:2], NAMESPACE, GATEWAY[2], "nayru"
    )
    return route


def _arm_weights(kube: KubeClient) -> list[Any]:
    """The shared rule's backends as (name, weight or None)."""
    rule = _live_route(kube)["spec"]["rules"][1]
    return [(ref["name"], ref.get("weight")) for ref in rule["backendRefs"]]


def _stage(kube: KubeClient, name: str) -> str | None:
    return ((_get_custom(kube, "modelversions", name) or {}).get("status") or {}).get("stage")


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


async def _counting(kube: KubeClient, name: str = "nayru-v2") -> datetime:
    """Wait until the test runs and its epoch counts records; when it started counting."""
    status = await _eventually(
        lambda: (
            (s := _status(kube, name)).get("phase") in ("Running", "WaitingPromotion")
            and (s.get("epochs") or [{}])[-1].get("start")
            and s
        )
    )
    return parse_timestamp(status["epochs"][-1]["start"])


def _traffic(
    url: str,
    start: datetime,
    *,
    arms: dict[str, tuple[int, float]],
    hours: float = 2.0,
    seed: int = 7,
) -> None:
    """``n`` records per arm (model = arm) over ``hours`` from ``start``, quality around
    the given mean, all rated good, the same latencies for both arms."""
    records = []
    for model, (count, quality) in arms.items():
        rng = random.Random(seed)  # the same noise for every arm: only the means differ
        for i in range(count):
            at = start + timedelta(hours=hours * (i + 0.5) / count)
            records.append(
                {"query": f"{model} q{i}", "response": f"a{i}", "model": model,
                 "quality_score": min(max(quality + rng.gauss(0, 0.05), 0.0), 1.0),
                 "user_feedback": 1, "latency_ms": 100 + rng.random() * 20,
                 "timestamp": at.isoformat()}
            )  # fmt: skip
    with UsageLogger(url=url) as logger:
        logger.log_many(records)


@pytest.fixture
def usage_db() -> Any:
    with fresh_schema() as url:
        yield url


async def test_a_better_challenger_is_promoted(
    kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    _register(kmock)
    async with operator(kmock, clock=clock) as kube:
        await _setup(kube, usage_db)
        start = await _counting(kube)
        assert await _call(_arm_weights, kube) == [("nayru-v1", 50), ("nayru-v2", 50)]
        assert await _call(_stage, kube, "nayru-v2") == "Challenger"
        _traffic(usage_db, start, arms={"nayru-v1": (300, 0.6), "nayru-v2": (300, 0.8)})
        clock.advance(hours=3)
        status = await _eventually(lambda: (s := _status(kube)).get("phase") == "Promoted" and s)
        assert status["verdict"] == "PROMOTE"
        assert status["weights"] == {"champion": 0, "challenger": 100}
        assert "quality proven higher" in status["reason"]
        arms = status["evidence"]["arms"]
        assert (arms["champion"]["requests"], arms["challenger"]["requests"]) == (300, 300)
        assert status["evidence"]["quality"]["lower"] > 0
        assert await _call(_arm_weights, kube) == [("nayru-v1", 0), ("nayru-v2", 100)]
        route = await _call(_live_route, kube)
        assert route["spec"]["rules"][0] == _route()["spec"]["rules"][0]  # untouched
        record = json.loads(route["metadata"]["annotations"][RECORD_ANNOTATION])
        assert (record["phase"], record["verdict"]) == ("Promoted", "PROMOTE")
        assert await _call(_stage, kube, "nayru-v2") == "Champion"
        assert await _call(_stage, kube, "nayru-v1") == "Retired"
        assert _condition(status, "Ready")["reason"] == "Promoted"
        assert await _call(lambda: _pruned_in_a_cluster(kube, expect="ABTest")) == []
        await _eventually(lambda: {"StepApplied", "Promoted"} <= _event_reasons(kmock))
    sample = METRICS.registry.get_sample_value
    assert sample("afs_abtest_decisions_total", {"verdict": "PROMOTE"})
    labels = {"namespace": NAMESPACE, "name": "nayru-v2"}
    assert sample("afs_abtest_phase", {**labels, "phase": "Promoted"}) == 1
    assert sample("afs_abtest_weight", {**labels, "arm": "challenger"}) == 100
    assert sample("afs_abtest_duration_seconds_count") >= 1
