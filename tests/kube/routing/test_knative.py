"""The Knative Service router: the traffic block read → patch written, table-driven, each
patch applied (RFC 6902). Objects follow Knative's traffic-splitting documentation."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from afs.continuous.kube.api.v1alpha1 import ArmWeights, RuleWeights
from afs.continuous.kube.routing import Arms, RoutingError
from afs.continuous.kube.routing.knative import KnativeRouter

ROUTER = KnativeRouter()
ARMS = Arms("nayru-00002", "nayru-00003")


def _service(*traffic: dict[str, Any], status: Any = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "nayru", "generation": 5},
        "spec": {
            "template": {"spec": {"containers": [{"image": "registry/nayru:3"}]}},
            "traffic": list(traffic),
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


def _apply(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), ops)
    return result


def _percents(obj: dict[str, Any]) -> list[int | None]:
    return [entry.get("percent") for entry in obj["spec"]["traffic"]]


@pytest.mark.parametrize(
    ("traffic", "live", "missing"),
    [
        ([{"revisionName": "nayru-00002", "percent": 100},
          {"revisionName": "nayru-00003", "percent": 0, "tag": "challenger"}],
         [ArmWeights(champion=100, challenger=0)], ()),
        ([{"latestRevision": True, "percent": 100}], [], ("nayru-00002", "nayru-00003")),
        ([{"revisionName": "nayru-00002", "percent": 100}], [], ("nayru-00003",)),
    ],
    ids=["pinned", "latest-only", "no-challenger-revision"],
)  # fmt: skip
def test_observe_finds_both_pinned_revisions(
    traffic: list[dict[str, Any]], live: list[ArmWeights], missing: tuple[str, ...]
) -> None:
    observed = ROUTER.observe(_service(*traffic), ARMS)
    assert observed.found and observed.weights == live and observed.missing == missing


def test_steps_keep_the_block_at_100_and_leave_other_entries() -> None:
    obj = _service(
        {"revisionName": "nayru-00002", "percent": 90},
        {"latestRevision": True, "percent": 10, "tag": "latest"},
        {"revisionName": "nayru-00003", "percent": 0, "tag": "challenger"},
    )
    observed = ROUTER.observe(obj, ARMS)
    after = _apply(obj, ROUTER.patch_weights(observed, ArmWeights(champion=50, challenger=50)))
    assert _percents(after) == [45, 10, 45]
    assert after["spec"]["traffic"][2]["tag"] == "challenger"
    promoted = _apply(obj, ROUTER.promote(observed))
    assert _percents(promoted) == [0, 10, 90]


def test_restore_gives_back_the_traffic_block_exactly() -> None:
    obj = _service({"revisionName": "nayru-00002", "percent": 100},
                   {"revisionName": "nayru-00003", "tag": "challenger"})  # fmt: skip
    original = ROUTER.observe(obj, ARMS).original()
    assert original == [RuleWeights(rule=0, champion=100, challenger=None)]
    during = _apply(obj, ROUTER.patch_weights(ROUTER.observe(obj, ARMS),
                                              ArmWeights(champion=90, challenger=10)))  # fmt: skip
    assert _percents(during) == [90, 10]
    restored = _apply(during, ROUTER.restore(ROUTER.observe(during, ARMS), original))
    assert restored == obj


def test_arms_with_no_share_cannot_be_split() -> None:
    obj = _service({"latestRevision": True, "percent": 100},
                   {"revisionName": "nayru-00002", "percent": 0},
                   {"revisionName": "nayru-00003", "percent": 0})  # fmt: skip
    with pytest.raises(RoutingError, match="hold no share"):
        ROUTER.patch_weights(ROUTER.observe(obj, ARMS), ArmWeights(champion=90, challenger=10))


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        (None, True),
        ({"observedGeneration": 5, "conditions": [{"type": "Ready", "status": "True"}]}, True),
        ({"observedGeneration": 4, "conditions": [{"type": "Ready", "status": "True"}]}, False),
        ({"observedGeneration": 5, "conditions": [{"type": "Ready", "status": "False",
                                                   "message": "revision failed"}]}, False),
    ],
)  # fmt: skip
def test_a_write_counts_once_knative_reconciled_it(status: Any, ready: bool) -> None:
    obj = _service({"revisionName": "nayru-00002", "percent": 100},
                   {"revisionName": "nayru-00003", "percent": 0}, status=status)  # fmt: skip
    observed = ROUTER.observe(obj, ARMS)
    assert observed.accepted is ready and bool(observed.waiting) is not ready
