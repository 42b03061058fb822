"""The ABTest lifecycle's pure decisions: (spec, status, observation, now) → plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from afs.continuous.kube import rollout
from afs.continuous.kube.api.v1alpha1 import (
    ABTestPhase,
    ABTestSpec,
    ABTestStatus,
    ArmWeights,
    EpochStatus,
    RuleWeights,
)
from afs.continuous.kube.routing import RECORD_ANNOTATION, Arms
from afs.continuous.kube.routing.gateway_api import GatewayAPIRouter
from afs.continuous.timeutil import format_timestamp

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
T0 = format_timestamp(NOW - timedelta(hours=2))
ROUTER = GatewayAPIRouter()
ME = rollout.Identity("ml", "t", "uid-1", 1)
SPEC = ABTestSpec.model_validate(
    {
        "champion": {"modelVersion": "v1"},
        "challenger": {"modelVersion": "v2"},
        "traffic": {
            "provider": "gateway-api",
            "targetRef": {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                          "name": "r"},
        },
        "steps": [{"weight": 10, "pause": "1h"}, {"weight": 50}],
    }
)  # fmt: skip
ORIGINAL = [RuleWeights(rule=0, champion=None, challenger=0)]


def _route(champion: int | None, challenger: int, record: dict[str, Any] | None = None) -> Any:
    v1: dict[str, Any] = {"name": "v1"} if champion is None else {"name": "v1", "weight": champion}
    obj: dict[str, Any] = {
        "metadata": {"name": "r"},
        "spec": {"rules": [{"backendRefs": [v1, {"name": "v2", "weight": challenger}]}]},
    }
    if record is not None:
        obj["metadata"]["annotations"] = {RECORD_ANNOTATION: json.dumps(record)}
    return ROUTER.observe(obj, Arms("v1", "v2"))


def _running(step: int = 0, weight: int = 10, start: str | None = T0) -> ABTestStatus:
    weights = ArmWeights(champion=100 - weight, challenger=weight)
    return ABTestStatus(
        phase=ABTestPhase.RUNNING, step=step, weights=weights, original=ORIGINAL, started=T0,
        epochs=[EpochStatus(step=step, weights=weights, applied=T0, start=start)],
    )  # fmt: skip


def _plan(
    status: ABTestStatus, route: Any, *, spec: ABTestSpec = SPEC, **observation: Any
) -> rollout.Plan:
    return rollout.plan(
        spec=spec, status=status, router=ROUTER,
        observation=rollout.Observation(route=route, **observation), identity=ME,
        analysis_interval=timedelta(seconds=30), now=NOW,
    )  # fmt: skip


def _reasons(plan: rollout.Plan) -> list[str]:
    return [reason for _, reason, _ in plan.events]


def test_a_new_test_remembers_the_original_and_applies_its_first_step() -> None:
    plan = _plan(ABTestStatus(), _route(None, 0))
    assert plan.status.phase == ABTestPhase.RUNNING
    assert plan.status.original == ORIGINAL
    assert plan.status.weights == ArmWeights(champion=90, challenger=10)
    assert [(e.step, e.start) for e in plan.status.epochs] == [(0, None)]  # counted once accepted
    written = {op["path"]: op["value"] for op in plan.patch if op["op"] != "test"}
    assert written["/spec/rules/0/backendRefs/0/weight"] == 90
    assert written["/spec/rules/0/backendRefs/1/weight"] == 10
    record = json.loads(written["/metadata/annotations"][RECORD_ANNOTATION])
    assert (record["uid"], record["step"], record["phase"]) == ("uid-1", 0, "Running")
    assert record["original"] == [{"rule": 0, "champion": None, "challenger": 0}]
    assert {k: v.value for k, v in plan.stages.items()} == {"v1": "Champion", "v2": "Challenger"}
    assert _reasons(plan) == ["StepApplied"]


def test_an_epoch_starts_counting_once_the_route_accepted_its_weights() -> None:
    plan = _plan(_running(start=None), _route(90, 10))
    assert plan.status.epochs[-1].start == format_timestamp(NOW)
    assert plan.patch == []


def test_a_step_applied_by_an_operator_that_died_before_recording_it_is_adopted() -> None:
    """The record on the route says step 1 was written; the status still says step 0."""
    applied = format_timestamp(NOW - timedelta(minutes=5))
    record = {"test": "ml/t", "uid": "uid-1", "phase": "Running", "step": 1, "applied": applied,
              "weights": {"champion": 50, "challenger": 50},
              "original": [{"rule": 0, "champion": None, "challenger": 0}]}  # fmt: skip
    plan = _plan(_running(), _route(50, 50, record))
    assert plan.patch == []  # not applied twice, and not taken for drift
    assert plan.status.step == 1
    assert plan.status.weights == ArmWeights(champion=50, challenger=50)
    assert [e.step for e in plan.status.epochs] == [0, 1]
    again = _plan(plan.status, _route(50, 50, record))
    assert again.patch == [] and [e.step for e in again.status.epochs] == [0, 1]


def test_a_verdict_acted_on_but_not_recorded_is_not_lost() -> None:
    record = {"test": "ml/t", "uid": "uid-1", "phase": "Promoted", "step": 0, "applied": T0,
              "weights": {"champion": 0, "challenger": 100}, "verdict": "PROMOTE",
              "original": []}  # fmt: skip
    plan = _plan(_running(), _route(0, 100, record))
    assert plan.status.phase == ABTestPhase.PROMOTED
    assert plan.status.verdict == "PROMOTE"
    assert plan.patch == []
    assert {k: v.value for k, v in plan.stages.items()} == {"v2": "Champion", "v1": "Retired"}


def test_a_route_under_test_by_another_abtest_waits() -> None:
    record = {"test": "ml/other", "uid": "uid-2", "phase": "Running", "step": 0, "applied": T0,
              "weights": {"champion": 90, "challenger": 10}, "original": []}  # fmt: skip
    plan = _plan(ABTestStatus(), _route(90, 10, record))
    assert plan.patch == []
    assert plan.status.conditions[-1].reason == "TargetInUse"


@pytest.mark.parametrize(
    ("minutes", "step"), [(30, 0), (61, 1)], ids=["pause-not-over", "pause-over"]
)
def test_the_next_step_waits_for_the_pause(minutes: int, step: int) -> None:
    start = format_timestamp(NOW - timedelta(minutes=minutes))
    plan = _plan(_running(start=start), _route(90, 10))  # no data yet: CONTINUE
    assert plan.verdict is not None and plan.verdict.kind.value == "CONTINUE"
    assert plan.status.step == step
    assert bool(plan.patch) is (step == 1)


def test_analysis_waits_for_its_interval() -> None:
    status = _running()
    status.last_analysis_time = format_timestamp(NOW - timedelta(seconds=10))
    assert _plan(status, _route(90, 10)).verdict is None


@pytest.mark.parametrize(
    ("status", "action", "reason", "consumed"),
    [
        (_running(), "promtoe", "UnknownAction", True),
        (ABTestStatus(phase=ABTestPhase.PROMOTED), "abort", "ActionIgnored", True),
        (_running(), "promote", None, False),  # kept: approval in advance of the evidence
    ],
    ids=["unknown", "after-the-end", "promote-early"],
)
def test_actions(status: ABTestStatus, action: str, reason: str | None, consumed: bool) -> None:
    plan = _plan(status, _route(90, 10), action=action)
    assert plan.consume_action is consumed
    assert (reason in _reasons(plan)) if reason else plan.status.phase == ABTestPhase.RUNNING


def test_abort_restores_the_original_weights() -> None:
    plan = _plan(_running(), _route(90, 10), action="abort")
    assert plan.status.phase == ABTestPhase.ROLLED_BACK
    assert plan.consume_action
    ops = {op["path"]: op for op in plan.patch if op["op"] != "test"}
    assert ops["/spec/rules/0/backendRefs/0/weight"]["op"] == "remove"  # unset again
    assert ops["/spec/rules/0/backendRefs/1/weight"]["value"] == 0
    assert {k: v.value for k, v in plan.stages.items()} == {"v2": "Rejected"}


def test_a_deleted_running_test_restores_and_a_finished_one_does_not() -> None:
    record = {"test": "ml/t", "uid": "uid-1", "phase": "Running", "step": 0, "applied": T0,
              "weights": {"champion": 90, "challenger": 10},
              "original": [{"rule": 0, "champion": None, "challenger": 0}]}  # fmt: skip
    kwargs: dict[str, Any] = {"router": ROUTER, "identity": ME, "now": NOW}
    ops = rollout.restore_on_delete(status=_running(), route=_route(90, 10, record), **kwargs)
    assert any(op["op"] == "remove" for op in ops)
    ended = dict(record, phase="Promoted")
    assert rollout.restore_on_delete(status=_running(), route=_route(0, 100, ended), **kwargs) == []


def test_a_test_paused_by_drift_resumes_with_a_new_epoch_once_the_weights_are_back() -> None:
    status = _running()
    spec = SPEC.model_copy(deep=True)
    spec.traffic.on_drift = "pause"
    paused = _plan(status, _route(70, 30), spec=spec)  # someone else's weights

    assert paused.patch == [] and paused.status.epochs == status.epochs
    assert paused.status.conditions[-1].reason == "WeightsDrifted"
    resumed = _plan(paused.status, _route(90, 10), spec=spec)
    assert "Resumed" in _reasons(resumed)
    assert [e.applied for e in resumed.status.epochs] == [T0, format_timestamp(NOW)]


# --- deploy mode -------------------------------------------------------------------------


def _champion_only() -> Any:
    obj = {"metadata": {"name": "r"}, "spec": {"rules": [{"backendRefs": [{"name": "v1"}]}]}}
    return ROUTER.observe(obj, Arms("v1", "v2"))


def test_deploy_mode_waits_until_the_challenger_is_available() -> None:
    why = ("challenger: ModelVersion v2 is not Available (1 of 2)",)
    plan = _plan(ABTestStatus(), _champion_only(), deployed=frozenset({"v2"}), unavailable=why)
    assert plan.patch == [] and plan.status.conditions[-1].reason == "NotAvailable"
    assert "1 of 2" in plan.status.conditions[-1].message


def test_deploy_mode_puts_the_challenger_s_service_in_the_route_first() -> None:
    plan = _plan(ABTestStatus(), _champion_only(), deployed=frozenset({"v1", "v2"}))
    added = [op for op in plan.patch if op["op"] == "add" and "backendRefs" in op["path"]]
    assert added == [{"op": "add", "path": "/spec/rules/0/backendRefs/-",
                      "value": {"name": "v2", "weight": 0}}]  # fmt: skip
    assert plan.status.phase == ABTestPhase.PENDING and plan.status.weights is None
    assert _reasons(plan) == ["BackendAdded"]


def test_without_deploy_mode_a_missing_challenger_is_reported() -> None:
    plan = _plan(ABTestStatus(), _champion_only())
    assert plan.patch == [] and plan.status.conditions[-1].reason == "BackendNotFound"


@pytest.mark.parametrize(
    ("action", "removed"),
    [("abort", "/spec/rules/0/backendRefs/1"), ("promote-now", "/spec/rules/0/backendRefs/0")],
    ids=["rollback-removes-the-challenger", "promotion-removes-the-old-champion"],
)
def test_deploy_mode_takes_the_leaving_version_out_of_the_route(action: str, removed: str) -> None:
    status = _running()
    if action == "promote-now":
        status.phase = ABTestPhase.WAITING_PROMOTION
        spec = SPEC.model_copy(update={"promotion": "manual", "approved_challenger": "v2"})
        plan = _plan(status, _route(90, 10), spec=spec, deployed=frozenset({"v1", "v2"}))
    else:
        plan = _plan(status, _route(90, 10), action=action, deployed=frozenset({"v1", "v2"}))
    removals = [op["path"] for op in plan.patch if op["op"] == "remove" and op["path"] == removed]
    assert removals == [removed]


def test_a_test_deleted_after_putting_its_challenger_in_takes_it_out_again() -> None:
    record = {"test": "ml/t", "uid": "uid-1", "phase": "Pending", "step": 0, "applied": T0,
              "weights": None, "original": []}  # fmt: skip
    kwargs: dict[str, Any] = {"router": ROUTER, "identity": ME, "now": NOW}
    route = _route(None, 0, record)
    ops = rollout.restore_on_delete(status=ABTestStatus(), route=route, remove_challenger=True,
                                    **kwargs)  # fmt: skip
    assert {"op": "remove", "path": "/spec/rules/0/backendRefs/1"} in ops
    assert rollout.restore_on_delete(status=ABTestStatus(), route=route, **kwargs) == []


def test_the_decision_settings_carry_the_unit_and_the_error_ratio() -> None:
    body = SPEC.model_dump(by_alias=True, exclude_none=True)
    body["decision"] = {"unit": "key", "minUnitsPerArm": 30, "errorRatio": 1.5}
    settings = rollout.decision_settings(ABTestSpec.model_validate(body))
    assert (settings.unit, settings.min_units, settings.error_ratio) == ("key", 30, 1.5)
    assert rollout.decision_settings(SPEC).unit == "request"


DOWN = "the URL in Secret ml/db key url cannot be reached: connection refused"


def test_a_test_whose_database_cannot_be_read_moves_no_traffic() -> None:
    plan = _plan(ABTestStatus(), _route(None, 0), database_problem=DOWN)
    assert plan.patch == [] and plan.stages == {}
    assert plan.status.phase == ABTestPhase.PENDING
    [ready] = [c for c in plan.status.conditions if c.type == "Ready"]
    assert (ready.status, ready.reason) == ("False", "DatabaseUnavailable")
    assert ready.message == f"{DOWN}; no traffic moves until its records can be read"
    assert _reasons(plan) == ["DatabaseUnavailable"]
    again = _plan(plan.status, _route(None, 0), database_problem=DOWN)
    assert _reasons(again) == []  # one Event while it lasts, not one per reconcile


def test_a_running_test_that_loses_its_database_holds_its_step() -> None:
    plan = _plan(_running(), _route(90, 10), database_problem=DOWN)
    assert plan.patch == [] and plan.verdict is None
    assert plan.status.phase == ABTestPhase.RUNNING and plan.status.step == 0
    assert plan.status.database_unavailable_since == format_timestamp(NOW)
    [ready] = [c for c in plan.status.conditions if c.type == "Ready"]
    assert ready.reason == "DatabaseUnavailable" and "holding step 1" in ready.message
    assert "set decision.unreachableTimeout" in ready.message
    assert _reasons(plan) == ["DatabaseUnavailable"]


def test_a_database_back_resumes_the_test_with_an_event() -> None:
    status = _running()
    status.database_unavailable_since = T0
    plan = _plan(status, _route(90, 10), database_checked=True)
    assert plan.status.database_unavailable_since is None
    assert "DatabaseAvailable" in _reasons(plan)
    [ready] = [c for c in plan.status.conditions if c.type == "Ready"]
    assert (ready.status, ready.reason) == ("True", "Running")


@pytest.mark.parametrize(
    ("lost_for", "phase"),
    [(timedelta(minutes=29), ABTestPhase.RUNNING),
     (timedelta(minutes=30), ABTestPhase.ROLLED_BACK)],
    ids=["before-the-timeout", "at-the-timeout"],
)  # fmt: skip
def test_with_an_unreachable_timeout_the_champion_gets_the_traffic_back(
    lost_for: timedelta, phase: ABTestPhase
) -> None:
    spec = SPEC.model_copy(deep=True)
    spec.decision.unreachable_timeout = "30m"
    status = _running()
    status.database_unavailable_since = format_timestamp(NOW - lost_for)
    plan = _plan(status, _route(90, 10), spec=spec, database_problem=DOWN)
    assert plan.status.phase == phase
    if phase == ABTestPhase.RUNNING:
        assert plan.patch == []
        [ready] = [c for c in plan.status.conditions if c.type == "Ready"]
        assert "the champion gets all traffic back at 2026-12-01T12:01:00" in ready.message
        return
    written = {op["path"]: op.get("value") for op in plan.patch if op["op"] != "test"}
    assert "/spec/rules/0/backendRefs/1/weight" in written  # the original weights, restored
    assert plan.status.reason.startswith("back to the champion: the usage database was ")
    assert {"WeightsRestored", "RolledBack"} <= set(_reasons(plan))
    assert {k: v.value for k, v in plan.stages.items()} == {"v2": "Rejected"}
