"""The ABTest controller end to end: the real kopf and ``kubernetes`` client against the
emulator with a Gateway API HTTPRoute, the arms' usage records in a real throwaway
PostgreSQL, and the clock injected so that hours pass when the test says so."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime, timedelta
from typing import Any

import kmock
import pytest
from prometheus_client import generate_latest

from afs.continuous import UsageLogger
from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION
from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.metrics import OperatorMetrics
from afs.continuous.kube.routing import RECORD_ANNOTATION
from afs.continuous.timeutil import parse_timestamp
from tests.conftest import FakeClock
from tests.kube.emulator import ApiServerEmulator
from tests.kube.test_operator_scenarios import (
    METRICS,
    NAMESPACE,
    _call,
    _database_secret,
    _event_reasons,
    _eventually,
    _finish_job,
    _get_custom,
    _loop,
    _loop_manifest,
    _pruned_in_a_cluster,
    _register,
    _setup as _setup_loop,
    operator,
)
from tests.postgres_server import fresh_schema

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(120)]

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
    await _database_secret(kube, url)
    await versions_and_route(kube, route=route, versions=versions)
    await _create(kube, "abtests", test or _abtest())


async def versions_and_route(
    kube: KubeClient,
    *,
    route: dict[str, Any] | None = None,
    versions: tuple[str, ...] = ("nayru-v1", "nayru-v2"),
) -> None:
    """The arms' ModelVersions and the route holding them (``ARMS`` unless given)."""
    for name in versions:
        await _create(kube, "modelversions", _version(name))
    await _call(
        kube.custom.create_namespaced_custom_object, *GATEWAY[:2], NAMESPACE, GATEWAY[2],
        route or _route(*ARMS),
    )  # fmt: skip


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
    with UsageLogger(url=url) as logger:
        logger.log_many(traffic_records(start, arms=arms, hours=hours, seed=seed))


def traffic_records(
    start: datetime,
    *,
    arms: dict[str, tuple[int, float]],
    hours: float = 2.0,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """The records of :func:`_traffic`, for a test that sends them another way."""
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
    return records


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
    assert (sample("afs_abtest_duration_seconds_count") or 0) >= 1


def _phase(kube: KubeClient, phase: str) -> Any:
    return lambda: (s := _status(kube)).get("phase") == phase and s


ORIGINAL = [("nayru-v1", None), ("nayru-v2", 0)]


@pytest.mark.parametrize(
    ("arms", "hours", "phase", "verdict", "reason"),
    [
        ({"nayru-v1": (300, 0.7), "nayru-v2": (300, 0.5)}, 3, "RolledBack", "ROLLBACK",
         "quality proven lower"),
        ({"nayru-v1": (150, 0.7), "nayru-v2": (150, 0.7)}, 25, "Inconclusive", "INCONCLUSIVE",
         "not enough evidence"),
        ({"nayru-v1": (500, 0.6), "nayru-v2": (100, 0.8)}, 3, "Halted", "HALT",
         "sample-ratio mismatch"),
    ],
    ids=["worse", "identical", "off-plan"],
)  # fmt: skip
async def test_a_test_without_a_promotion_restores_the_original_weights(
    kmock: kmock.KubernetesEmulator,
    usage_db: str,
    clock: FakeClock,
    arms: dict[str, tuple[int, float]],
    hours: float,
    phase: str,
    verdict: str,
    reason: str,
) -> None:
    _register(kmock)
    async with operator(kmock, clock=clock) as kube:
        await _setup(kube, usage_db)
        start = await _counting(kube)
        _traffic(usage_db, start, arms=arms)
        clock.advance(hours=hours)
        status = await _eventually(_phase(kube, phase))
        assert status["verdict"] == verdict
        assert reason in status["reason"]
        assert status["original"] == [{"rule": 1, "champion": None, "challenger": 0}]
        assert await _call(_arm_weights, kube) == ORIGINAL  # unset stays unset
        assert await _call(_stage, kube, "nayru-v2") == "Rejected"
        assert await _call(_stage, kube, "nayru-v1") == "Champion"
        await _eventually(lambda: {"WeightsRestored", phase} <= _event_reasons(kmock))


async def _annotate(kube: KubeClient, action: str) -> None:
    body = {"metadata": {"annotations": {"continuous.afs.dev/action": action}}}
    await _call(
        kube.custom.patch_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "abtests",
        "nayru-v2", body,
    )  # fmt: skip


def _action(kube: KubeClient) -> str | None:
    """The action annotation, while it is there (the operator removes it once acted on)."""
    annotations = _test(kube)["metadata"].get("annotations") or {}
    return annotations.get("continuous.afs.dev/action")


async def _patch_spec(kube: KubeClient, spec: dict[str, Any]) -> None:
    await _call(
        kube.custom.patch_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "abtests",
        "nayru-v2", {"spec": spec},
    )  # fmt: skip


BETTER = {"nayru-v1": (300, 0.6), "nayru-v2": (300, 0.8)}


@pytest.mark.parametrize("approval", ["annotation", "approvedChallenger"])
async def test_a_manual_gate_waits_for_approval(
    kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock, approval: str
) -> None:
    _register(kmock)
    async with operator(kmock, clock=clock) as kube:
        await _setup(kube, usage_db, test=_abtest(promotion="manual"))
        _traffic(usage_db, await _counting(kube), arms=BETTER)
        clock.advance(hours=3)
        status = await _eventually(_phase(kube, "WaitingPromotion"))
        assert status["verdict"] == "PROMOTE"
        assert _condition(status, "Progressing")["reason"] == "WaitingPromotion"
        await asyncio.sleep(1.0)  # several analyses later: still waiting, weights unchanged
        assert (await _call(_status, kube))["phase"] == "WaitingPromotion"
        assert await _call(_arm_weights, kube) == [("nayru-v1", 50), ("nayru-v2", 50)]
        if approval == "annotation":
            await _annotate(kube, "promote")
        else:
            await _patch_spec(kube, {"approvedChallenger": "nayru-v2"})
        status = await _eventually(_phase(kube, "Promoted"))
        assert "approved" in status["reason"]
        assert await _call(_arm_weights, kube) == [("nayru-v1", 0), ("nayru-v2", 100)]
        assert await _call(_action, kube) is None  # consumed in the write that promoted
        await _eventually(lambda: "WaitingPromotion" in _event_reasons(kmock))


async def test_abort_restores_and_rejects_at_once(
    kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    _register(kmock)
    async with operator(kmock, clock=clock) as kube:
        await _setup(kube, usage_db)
        await _counting(kube)
        await _annotate(kube, "abort")
        status = await _eventually(_phase(kube, "RolledBack"))
        assert _condition(status, "Ready")["reason"] == "Aborted"
        assert await _call(_arm_weights, kube) == ORIGINAL
        assert await _call(_stage, kube, "nayru-v2") == "Rejected"
        assert await _call(_action, kube) is None  # consumed in the write that aborted
        await _eventually(lambda: {"Aborted", "WeightsRestored"} <= _event_reasons(kmock))


async def _drift(kube: KubeClient) -> None:
    """Argo CD syncs the route from Git: the weights go back to 90/10."""
    managed = [{"manager": "argocd-controller", "operation": "Update",
                "time": "2099-01-01T00:00:00Z", "fieldsV1": {"f:spec": {}}}]  # fmt: skip
    ops = [
        {"op": "replace", "path": "/spec/rules/1/backendRefs/0/weight", "value": 90},
        {"op": "replace", "path": "/spec/rules/1/backendRefs/1/weight", "value": 10},
        {"op": "add", "path": "/metadata/managedFields", "value": managed},
    ]
    await _call(
        kube.custom.patch_namespaced_custom_object, *GATEWAY[:2], NAMESPACE, GATEWAY[2],
        "nayru", ops,
    )  # fmt: skip


def _drift_messages(emulator: kmock.KubernetesEmulator) -> list[str]:
    return [
        str((request.data or {}).get("message"))
        for request in list(emulator)
        if request.method == "POST" and request.resource is not None
        and request.resource.plural == "events"
        and (request.data or {}).get("reason") == "WeightsDrifted"
    ]  # fmt: skip


async def test_drifted_weights_are_written_back_with_an_event_naming_the_writer(
    kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    _register(kmock)
    async with operator(kmock, clock=clock) as kube:
        await _setup(kube, usage_db)
        await _counting(kube)
        epochs = len((await _call(_status, kube))["epochs"])
        await _drift(kube)
        [message, *_] = await _eventually(lambda: _drift_messages(kmock))
        assert "argocd-controller" in message and "written back" in message
        await _eventually(lambda: _arm_weights(kube) == [("nayru-v1", 50), ("nayru-v2", 50)])
        status = await _eventually(lambda: len((s := _status(kube))["epochs"]) > epochs and s)
        assert status["phase"] == "Running"  # a new epoch: the split was off plan meanwhile


async def test_drift_pauses_the_test_when_the_policy_says_so(
    kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    _register(kmock)
    traffic = {"provider": "gateway-api", "targetRef": TARGET, "onDrift": "pause"}
    async with operator(kmock, clock=clock) as kube:
        await _setup(kube, usage_db, test=_abtest(traffic=traffic))
        await _counting(kube)
        await _drift(kube)
        status = await _eventually(
            lambda: (
                _condition(s := _status(kube), "Progressing").get("reason") == "WeightsDrifted"
                and s
            )
        )
        assert _condition(status, "Progressing")["status"] == "False"
        await asyncio.sleep(1.0)  # paused: nothing written back
        assert await _call(_arm_weights, kube) == [("nayru-v1", 90), ("nayru-v2", 10)]
        assert "argocd-controller" in _drift_messages(kmock)[0]
        await _annotate(kube, "abort")  # the way out: abort restores the original
        await _eventually(_phase(kube, "RolledBack"))
        assert await _call(_arm_weights, kube) == ORIGINAL


async def test_deleting_a_running_test_restores_the_weights(
    kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    _register(kmock)
    async with operator(kmock, clock=clock) as kube:
        await _setup(kube, usage_db)
        await _counting(kube)
        assert await _call(_arm_weights, kube) == [("nayru-v1", 50), ("nayru-v2", 50)]
        await _call(
            kube.custom.delete_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "abtests",
            "nayru-v2",
        )  # fmt: skip
        await _eventually(lambda: _get_custom(kube, "abtests", "nayru-v2") is None)
        assert await _call(_arm_weights, kube) == ORIGINAL
        record = json.loads(
            (await _call(_live_route, kube))["metadata"]["annotations"][RECORD_ANNOTATION]
        )
        assert record["phase"] == "Deleted"


@pytest.mark.parametrize(
    ("route", "reason", "message"),
    [
        (None, "TargetNotFound", "HTTPRoute ml/nayru not found"),
        (_route({"name": "nayru-v1", "port": 80}), "BackendNotFound", "missing: nayru-v2"),
    ],
    ids=["no-route", "no-backend"],
)
async def test_a_test_waits_for_its_target_and_backends(
    kmock: kmock.KubernetesEmulator,
    usage_db: str,
    clock: FakeClock,
    route: dict[str, Any] | None,
    reason: str,
    message: str,
) -> None:
    _register(kmock)
    async with operator(kmock, clock=clock) as kube:
        other = {**_route(*ARMS), "metadata": {"name": "other", "namespace": NAMESPACE}}
        await _setup(kube, usage_db, route=route or other)
        status = await _eventually(
            lambda: _condition(s := _status(kube), "Ready").get("reason") == reason and s
        )
        assert message in _condition(status, "Ready")["message"]
        assert status.get("weights") is None
        await _eventually(lambda: reason in _event_reasons(kmock))
        if route is None:
            await _call(
                kube.custom.create_namespaced_custom_object, *GATEWAY[:2], NAMESPACE,
                GATEWAY[2], _route(*ARMS),
            )  # fmt: skip
        else:
            ops = [{"op": "add", "path": "/spec/rules/1/backendRefs/-",
                    "value": {"name": "nayru-v2", "port": 80, "weight": 0}}]  # fmt: skip
            await _call(
                kube.custom.patch_namespaced_custom_object, *GATEWAY[:2], NAMESPACE,
                GATEWAY[2], "nayru", ops,
            )  # fmt: skip
        await _counting(kube)
        assert await _call(_arm_weights, kube) == [("nayru-v1", 50), ("nayru-v2", 50)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"challenger": {"modelVersion": "nayru-v1"}}, "challenger.modelVersion: the champion"),
        ({"steps": [{"weight": 20}, {"weight": 10}]}, "steps.1.weight: steps must increase"),
        ({"steps": [{"weight": 120}]}, "steps.0.weight"),
        ({"champion": {"modelVersion": "nayru-v0"}}, "champion.modelVersion: ModelVersion ml/"),
        ({"traffic": {"provider": "kserve", "targetRef": TARGET}},
         "traffic.targetRef: provider 'kserve' routes InferenceService"),
        ({"traffic": {"provider": "gateway-api", "targetRef": {**TARGET, "kind": "Service"}}},
         "traffic.targetRef: provider 'gateway-api' routes HTTPRoute"),
        ({"promotion": "sometimes"}, "promotion"),
    ],
    ids=["same-arms", "decreasing", "above-100", "missing-version", "kserve-on-a-route",
         "wrong-kind", "bad-promotion"],
)  # fmt: skip
async def test_an_invalid_abtest_touches_no_weight(
    kmock: kmock.KubernetesEmulator,
    usage_db: str,
    clock: FakeClock,
    change: dict[str, Any],
    message: str,
) -> None:
    _register(kmock)
    async with operator(kmock, clock=clock) as kube:
        await _setup(kube, usage_db, test=_abtest(**change))
        status = await _eventually(
            lambda: _condition(s := _status(kube), "Ready").get("reason") == "InvalidSpec" and s
        )
        assert _condition(status, "Ready")["message"].startswith(message)
        await _eventually(lambda: "InvalidSpec" in _event_reasons(kmock))
        await asyncio.sleep(0.5)
        assert await _call(_arm_weights, kube) == ORIGINAL
        assert RECORD_ANNOTATION not in (
            (await _call(_live_route, kube))["metadata"].get("annotations") or {}
        )


def _route_patches(emulator: kmock.KubernetesEmulator) -> int:
    return sum(
        1
        for request in list(emulator)
        if request.method == "PATCH" and request.resource is not None
        and request.resource.plural == "httproutes"
        and any(op.get("path", "").endswith("/weight") for op in request.data or [])
    )  # fmt: skip


async def test_an_operator_restarted_mid_test_applies_no_step_twice(
    kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    _register(kmock)
    steps = [{"weight": 20, "pause": "1h"}, {"weight": 50}]
    async with operator(kmock, clock=clock) as kube:
        await _setup(kube, usage_db, test=_abtest(steps=steps))
        await _counting(kube)
        assert await _call(_arm_weights, kube) == [("nayru-v1", 80), ("nayru-v2", 20)]
    clock.advance(hours=2)  # the pause is over while no operator runs
    async with operator(kmock, clock=clock) as kube:
        await _eventually(lambda: _status(kube).get("step") == 1)
        start = await _counting(kube)
        assert await _call(_arm_weights, kube) == [("nayru-v1", 50), ("nayru-v2", 50)]
    async with operator(kmock, clock=clock) as kube:
        await asyncio.sleep(1.0)  # several reconciles of a test that is where it should be
        assert (await _call(_status, kube))["step"] == 1
        _traffic(usage_db, start, arms=BETTER)
        clock.advance(hours=3)
        status = await _eventually(_phase(kube, "Promoted"))
        assert [e["step"] for e in status["epochs"]] == [0, 1]
        assert await _call(_arm_weights, kube) == [("nayru-v1", 0), ("nayru-v2", 100)]
    assert _route_patches(kmock) == 3  # step 1, step 2, promotion: each once


WHOLE_LOOP_PROMOTION: dict[str, Any] = {
    "mode": "auto", "champion": "nayru-v1",
    "traffic": {"provider": "gateway-api", "targetRef": TARGET},
    "abTest": {"initialChallengerTraffic": 0.5, "minRequestsPerArm": 100,
               "minFeedbackPerArm": 20, "minDurationHours": 0, "maxDurationHours": 24},
}  # fmt: skip
"""A loop's promotion: automatic, half the traffic at once, a decision on 100 records."""


async def test_the_whole_loop_closes_in_the_cluster(
    kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    """LearningLoop → Job → ModelVersion → ABTest → Promoted → the loop's champion is the
    new version, its records fire the next run, and that run's parent is the champion."""
    _register(kmock)
    promotion = WHOLE_LOOP_PROMOTION
    _traffic(usage_db, clock() - timedelta(hours=1), arms={"nayru-v1": (30, 0.9)}, hours=0.5)
    async with operator(kmock, clock=clock) as kube:
        await _create(kube, "modelversions", _version("nayru-v1"))
        route = _route({"name": "nayru-v1", "port": 80}, {"name": "nayru-run-1", "weight": 0})
        await _call(
            kube.custom.create_namespaced_custom_object, *GATEWAY[:2], NAMESPACE, GATEWAY[2],
            route,
        )  # fmt: skip
        await _setup_loop(kube, usage_db, _loop_manifest(promotion=promotion))
        await _eventually(lambda: kube.get_job(NAMESPACE, "nayru-run-1"))
        report = json.dumps({"modelUri": "s3://models/nayru/run-1"})
        await _call(lambda: _finish_job(kube, "nayru-run-1", succeeded=True, message=report))
        start = await _counting(kube, "nayru-run-1")
        loop = await _eventually(lambda: (s := _loop(kube)["status"])["phase"] == "Testing" and s)
        assert loop["challenger"] == "nayru-run-1"
        _traffic(usage_db, start, arms={"nayru-v1": (300, 0.6), "nayru-run-1": (300, 0.8)})
        clock.advance(hours=3)
        await _eventually(lambda: _status(kube, "nayru-run-1").get("phase") == "Promoted")
        loop = await _eventually(
            lambda: (s := _loop(kube)["status"]).get("champion") == "nayru-run-1" and s
        )
        assert (loop["championModel"], loop.get("challenger")) == ("nayru-run-1", None)
        assert await _call(_stage, kube, "nayru-run-1") == "Champion"
        assert await _call(_stage, kube, "nayru-v1") == "Retired"
        clock.advance(hours=25)  # past the cooldown: the champion's own records fire run 2
        job = await _eventually(lambda: kube.get_job(NAMESPACE, "nayru-run-2"))
        export = job["spec"]["template"]["spec"]["initContainers"][0]["command"]
        assert "--model=nayru-run-1" in export
        report = json.dumps({"modelUri": "s3://models/nayru/run-2"})
        await _call(lambda: _finish_job(kube, "nayru-run-2", succeeded=True, message=report))
        version = await _eventually(lambda: _get_custom(kube, "modelversions", "nayru-run-2"))
        assert version["spec"]["lineage"]["parent"] == "nayru-run-1"
        assert await _call(_pruned_in_a_cluster, kube) == []
        await _eventually(lambda: "ChampionChanged" in _event_reasons(kmock))


async def test_no_traffic_moves_until_the_test_can_read_its_records(
    kmock: kmock.KubernetesEmulator,
    usage_db: str,
    clock: FakeClock,
) -> None:
    """Its database Secret missing, the test waits (Ready=False DatabaseUnavailable) with
    the route untouched; once the Secret is there, it starts."""
    _register(kmock)
    metrics = OperatorMetrics()
    async with operator(kmock, clock=clock, metrics=metrics) as kube:
        await versions_and_route(kube)  # and no database Secret
        await _create(kube, "abtests", _abtest())
        status = await _eventually(
            lambda: _condition(s := _status(kube), "Ready").get("reason") == "DatabaseUnavailable"
            and s
        )  # fmt: skip
        assert _condition(status, "Ready")["message"] == (
            "secret ml/usage-db not found; no traffic moves until its records can be read"
        )
        assert status["phase"] == "Pending" and status.get("weights") is None
        await _eventually(lambda: "DatabaseUnavailable" in _event_reasons(kmock))
        await asyncio.sleep(0.5)  # a few more reconciles: still nothing written
        assert await _call(_arm_weights, kube) == ORIGINAL
        assert _route_patches(kmock) == 0
        scraped = generate_latest(metrics.registry).decode()
        assert 'afs_database_unavailable{kind="ABTest",name="nayru-v2",namespace="ml"} 1.0' in (
            scraped
        )
        await _database_secret(kube, usage_db)
        await _counting(kube)
        assert await _call(_arm_weights, kube) == [("nayru-v1", 50), ("nayru-v2", 50)]
