"""The HTTPRoute router: object read → patch written, table-driven. Every patch is applied
with jsonpatch (RFC 6902, as the API server applies it) to check what it does."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest

from afs.continuous.kube.api.v1alpha1 import ArmWeights, RuleWeights
from afs.continuous.kube.routing import (
    RECORD_ANNOTATION,
    Arms,
    RoutingError,
    record_ops,
)
from afs.continuous.kube.routing.gateway_api import GatewayAPIRouter
from tests.kube.provider_schemas import apply_checked

ROUTER = GatewayAPIRouter()
ARMS = Arms("v1", "v2")
HEADER_FILTER = {  # another part of the rule, which must stay as it is
    "type": "RequestHeaderModifier",
    "requestHeaderModifier": {"set": [{"name": "x-route", "value": "r"}]},
}


def _route(*rules: list[dict[str, Any]], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "generation": 3, **metadata},
        "spec": {
            "rules": [
                {"backendRefs": [{"port": 80, **ref} for ref in refs], "filters": [HEADER_FILTER]}
                for refs in rules
            ]
        },
    }


_apply = apply_checked  # every write checked against the provider's own schema


def _weights(obj: dict[str, Any]) -> list[list[tuple[str, int | None]]]:
    return [
        [(ref["name"], ref.get("weight")) for ref in rule["backendRefs"]]
        for rule in obj["spec"]["rules"]
    ]


@pytest.mark.parametrize(
    ("rules", "live", "missing"),
    [
        ([[{"name": "v1"}, {"name": "v2", "weight": 0}]],
         [ArmWeights(champion=1, challenger=0)], ()),
        ([[{"name": "v1", "weight": 90}, {"name": "x"}, {"name": "v2", "weight": 10}],
          [{"name": "other"}]], [ArmWeights(champion=90, challenger=10)], ()),
        ([[{"name": "v1"}], [{"name": "v2"}]], [], ("v1", "v2")),
        ([[{"name": "v1"}]], [], ("v2",)),
        ([[{"name": "other"}]], [], ("v1", "v2")),
    ],
    ids=["unset-is-1", "other-backends-and-rules", "arms-in-different-rules", "no-challenger",
         "neither"],
)  # fmt: skip
def test_observe_finds_both_arms_in_every_rule_that_holds_them(
    rules: list[list[dict[str, Any]]], live: list[ArmWeights], missing: tuple[str, ...]
) -> None:
    observed = ROUTER.observe(_route(*rules), ARMS)
    assert observed.found
    assert observed.weights == live
    assert observed.missing == missing


def test_observe_a_missing_route() -> None:
    assert not ROUTER.observe(None, ARMS).found


@pytest.mark.parametrize(
    ("status", "accepted"),
    [
        (None, True),
        ({"parents": [{"parentRef": {"name": "gw"}, "conditions": [
            {"type": "Accepted", "status": "True", "observedGeneration": 3}]}]}, True),
        ({"parents": [{"parentRef": {"name": "gw"}, "conditions": [
            {"type": "Accepted", "status": "True", "observedGeneration": 2}]}]}, False),
        ({"parents": [{"parentRef": {"name": "gw"}, "conditions": [
            {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}]}]},
         False),
        ({"parents": [{"parentRef": {"name": "gw"}, "conditions": [
            {"type": "ResolvedRefs", "status": "True"}]}]}, True),
    ],
    ids=["no-status", "current", "stale-generation", "refused", "no-accepted-condition"],
)  # fmt: skip
def test_a_step_counts_once_the_route_is_accepted_at_its_generation(
    status: dict[str, Any] | None, accepted: bool
) -> None:
    obj = _route([{"name": "v1"}, {"name": "v2"}])
    if status is not None:
        obj["status"] = status
    observed = ROUTER.observe(obj, ARMS)
    assert observed.accepted is accepted
    assert bool(observed.waiting) is not accepted


def test_weights_are_written_in_every_rule_holding_both_arms_and_nothing_else() -> None:
    obj = _route(
        [{"name": "v1"}, {"name": "keep", "weight": 5}, {"name": "v2", "weight": 0}],
        [{"name": "v2", "weight": 3}, {"name": "v1", "weight": 7}],
        [{"name": "v1", "weight": 2}],
    )
    ops = ROUTER.patch_weights(ROUTER.observe(obj, ARMS), ArmWeights(champion=80, challenger=20))
    after = _apply(obj, ops)
    assert _weights(after) == [
        [("v1", 80), ("keep", 5), ("v2", 20)],
        [("v2", 20), ("v1", 80)],
        [("v1", 2)],
    ]
    assert after["spec"]["rules"][0]["filters"] == [HEADER_FILTER]
    assert {op["op"] for op in ops} == {"test", "add", "replace"}


def test_a_patch_fails_if_the_route_changed_since_it_was_read() -> None:
    obj = _route([{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}])
    ops = ROUTER.patch_weights(ROUTER.observe(obj, ARMS), ArmWeights(champion=50, challenger=50))
    changed = copy.deepcopy(obj)
    changed["spec"]["rules"][0]["backendRefs"][0]["weight"] = 70
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        _apply(changed, ops)
    reordered = copy.deepcopy(obj)
    reordered["spec"]["rules"][0]["backendRefs"].reverse()
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        _apply(reordered, ops)


def test_equal_weights_write_nothing() -> None:
    obj = _route([{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}])
    observed = ROUTER.observe(obj, ARMS)
    assert ROUTER.patch_weights(observed, ArmWeights(champion=50, challenger=50)) == []


def test_both_arms_at_zero_are_refused() -> None:
    observed = ROUTER.observe(_route([{"name": "v1"}, {"name": "v2"}]), ARMS)
    with pytest.raises(RoutingError, match="no traffic"):
        ROUTER.patch_weights(observed, ArmWeights(champion=0, challenger=0))


def test_restore_puts_back_exactly_what_was_read_unset_included() -> None:
    obj = _route([{"name": "v1"}, {"name": "v2", "weight": 0}])
    original = ROUTER.observe(obj, ARMS).original()
    assert original == [RuleWeights(rule=0, champion=None, challenger=0)]
    during = _apply(
        obj, ROUTER.patch_weights(ROUTER.observe(obj, ARMS), ArmWeights(champion=60, challenger=40))
    )
    restored = _apply(during, ROUTER.restore(ROUTER.observe(during, ARMS), original))
    assert restored == obj


def test_promote_sends_everything_to_the_challenger() -> None:
    obj = _route([{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}])
    after = _apply(obj, ROUTER.promote(ROUTER.observe(obj, ARMS)))
    assert _weights(after) == [[("v1", 0), ("v2", 100)]]


@pytest.mark.parametrize("annotations", [None, {}, {"a": "b"}, {RECORD_ANNOTATION: '{"x":1}'}])
def test_the_record_is_written_beside_any_annotations(annotations: dict[str, str] | None) -> None:
    obj = _route([{"name": "v1"}, {"name": "v2"}])
    if annotations is not None:
        obj["metadata"]["annotations"] = annotations
    after = _apply(obj, record_ops(ROUTER.observe(obj, ARMS), {"step": 1}))
    written = after["metadata"]["annotations"]
    assert json.loads(written[RECORD_ANNOTATION]) == {"step": 1}
    assert {k: v for k, v in written.items() if k != RECORD_ANNOTATION} == {
        k: v for k, v in (annotations or {}).items() if k != RECORD_ANNOTATION
    }


def test_a_record_on_an_object_without_annotations_is_written_only_onto_the_object_read() -> None:
    """Writing the whole annotations map would replace what another writer added since:
    the patch tests the resourceVersion read, so the API server refuses it instead."""
    obj = _route([{"name": "v1"}, {"name": "v2"}])
    obj["metadata"]["resourceVersion"] = "41"
    ops = record_ops(ROUTER.observe(obj, ARMS), {"step": 1})
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "41"}
    assert json.loads(_apply(obj, ops)["metadata"]["annotations"][RECORD_ANNOTATION]) == {"step": 1}
    since = copy.deepcopy(obj)
    since["metadata"].update(resourceVersion="42", annotations={"argocd.argoproj.io/x": "y"})
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        _apply(since, ops)


def test_the_writer_of_a_drift_is_read_from_managed_fields() -> None:
    managed = [
        {"manager": "afs-continuous", "time": "2026-01-02T00:00:00Z", "fieldsV1": {"f:spec": {}}},
        {"manager": "argocd", "time": "2026-01-01T00:00:00Z", "fieldsV1": {"f:spec": {}}},
        {"manager": "gateway", "time": "2026-01-03T00:00:00Z", "fieldsV1": {"f:status": {}}},
    ]
    observed = ROUTER.observe(_route([{"name": "v1"}], managedFields=managed), ARMS)
    assert observed.last_writer("f:spec", other_than="afs-continuous") == "argocd"
    assert ROUTER.observe(_route([]), ARMS).last_writer("f:spec", other_than="x") is None
