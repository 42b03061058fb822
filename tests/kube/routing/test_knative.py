"""The Knative Service router: the traffic block read → patch written, table-driven, each
patch applied (RFC 6902). Objects follow Knative's traffic-splitting documentation."""

from __future__ import annotations

from typing import Any

import pytest

from afs.continuous.kube.api.v1alpha1 import ArmWeights, RuleWeights
from afs.continuous.kube.routing import Arms, RoutingError, insertion_ops, removal_ops
from afs.continuous.kube.routing.knative import KnativeRouter
from tests.kube.provider_schemas import apply_checked

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


_apply = apply_checked  # every write checked against the provider's own schema


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


# --- creating the challenger's revision (traffic.createRevision) -------------------------

CREATING = KnativeRouter(service="nayru", create_revision=True)
WITH_URI = Arms("nayru-00002", "nayru-00003", challenger_uri="s3://models/nayru/run-3/")


def test_the_challenger_s_revision_is_made_from_the_template() -> None:
    obj = _service({"revisionName": "nayru-00002", "percent": 100})
    observed = CREATING.observe(obj, WITH_URI)
    assert observed.missing == ("nayru-00003",) and observed.openings
    made = _apply(obj, insertion_ops(observed))
    assert made["spec"]["template"]["metadata"]["name"] == "nayru-00003"
    assert made["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "AFS_MODEL_URI", "value": "s3://models/nayru/run-3/"},
        {"name": "AFS_MODEL_VERSION", "value": "nayru-00003"},
    ]
    assert made["spec"]["traffic"][1] == {
        "revisionName": "nayru-00003",
        "percent": 0,
        "tag": "challenger",
    }
    after = CREATING.observe(made, WITH_URI)
    assert after.missing == () and after.weights == [ArmWeights(champion=100, challenger=0)]
    rolled_back = _apply(made, removal_ops(after, champion=False))
    assert rolled_back["spec"]["traffic"] == obj["spec"]["traffic"]  # the block exactly


@pytest.mark.parametrize(
    ("arms", "traffic", "problem"),
    [
        (Arms("nayru-00002", "other-3", challenger_uri="s3://m"),
         [{"revisionName": "nayru-00002", "percent": 100}], "must start with the Service's name"),
        (Arms("nayru-00002", "nayru-00003"),
         [{"revisionName": "nayru-00002", "percent": 100}], "no uri"),
        (WITH_URI, [{"revisionName": "nayru-00002", "percent": 90},
                    {"latestRevision": True, "percent": 10}], "follows the latest revision"),
        (Arms("nayru-00002", "nayru-v2.1", challenger_uri="s3://m"),
         [{"revisionName": "nayru-00002", "percent": 100}], "is not a DNS-1035 label"),
    ],
    ids=["revision-name", "no-uri", "latest-takes-traffic", "dot-in-name"],
)  # fmt: skip
def test_a_revision_that_cannot_be_made_is_named(
    arms: Arms, traffic: list[dict[str, Any]], problem: str
) -> None:
    observed = CREATING.observe(_service(*traffic), arms)
    assert problem in observed.unsupported and not observed.openings


def test_without_create_revision_nothing_is_made() -> None:
    obj = _service({"revisionName": "nayru-00002", "percent": 100})
    assert ROUTER.observe(obj, WITH_URI).openings == ()


def test_the_challenger_s_tag_is_one_no_entry_holds() -> None:
    """Knative refuses a tag twice: a block that already tags something ``challenger``
    gets ``challenger-2``."""
    obj = _service(
        {"revisionName": "nayru-00002", "percent": 100},
        {"revisionName": "nayru-00001", "percent": 0, "tag": "challenger"},
    )
    made = _apply(obj, insertion_ops(CREATING.observe(obj, WITH_URI)))
    tags = [entry.get("tag") for entry in made["spec"]["traffic"]]
    assert tags == [None, "challenger", "challenger-2"]
