"""The TrafficSplit router: object read → patch written, table-driven, checked by applying
each patch (RFC 6902). Objects follow the SMI spec's and Linkerd's examples."""

from __future__ import annotations

from typing import Any

import pytest

from afs.continuous.kube.api.v1alpha1 import ArmWeights, RuleWeights
from afs.continuous.kube.routing import Arms, RoutingError
from afs.continuous.kube.routing.smi import SMIRouter
from tests.kube.provider_schemas import apply_checked

ROUTER = SMIRouter("v1alpha2")
ARMS = Arms("web-v1", "web-v2")


def _split(*backends: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": "TrafficSplit",
        "metadata": {"name": "web-split", "namespace": "ml"},
        "spec": {"service": "web", "backends": list(backends)},
    }


_apply = apply_checked  # every write checked against the provider's own schema


def _weights(obj: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(b["service"], b.get("weight")) for b in obj["spec"]["backends"]]


@pytest.mark.parametrize(
    ("backends", "live", "missing"),
    [
        ([{"service": "web-v1", "weight": 100}, {"service": "web-v2", "weight": 0}],
         [ArmWeights(champion=100, challenger=0)], ()),
        ([{"service": "web-v1", "weight": 500}, {"service": "other", "weight": 500},
          {"service": "web-v2", "weight": 0}], [ArmWeights(champion=500, challenger=0)], ()),
        ([{"service": "web-v1", "weight": 100}], [], ("web-v2",)),
        ([], [], ("web-v1", "web-v2")),
    ],
    ids=["two", "three", "no-challenger", "empty"],
)  # fmt: skip
def test_observe_finds_both_backends(
    backends: list[dict[str, Any]], live: list[ArmWeights], missing: tuple[str, ...]
) -> None:
    observed = ROUTER.observe(_split(*backends), ARMS)
    assert observed.found and observed.weights == live and observed.missing == missing


def test_a_step_writes_both_weights_and_nothing_else() -> None:
    obj = _split({"service": "web-v1", "weight": 100}, {"service": "other", "weight": 7},
                 {"service": "web-v2", "weight": 0})  # fmt: skip
    ops = ROUTER.patch_weights(ROUTER.observe(obj, ARMS), ArmWeights(champion=90, challenger=10))
    assert _weights(_apply(obj, ops)) == [("web-v1", 90), ("other", 7), ("web-v2", 10)]
    assert ops[0] == {"op": "test", "path": "/spec/backends/0/service", "value": "web-v1"}
    promoted = _apply(obj, ROUTER.promote(ROUTER.observe(obj, ARMS)))
    assert _weights(promoted) == [("web-v1", 0), ("other", 7), ("web-v2", 100)]


def test_restore_gives_back_the_exact_original() -> None:
    obj = _split({"service": "web-v1", "weight": 100}, {"service": "web-v2", "weight": 0})
    original = ROUTER.observe(obj, ARMS).original()  # SMI's CRDs require every weight
    assert original == [RuleWeights(rule=0, champion=100, challenger=0)]
    during = _apply(obj, ROUTER.patch_weights(ROUTER.observe(obj, ARMS),
                                              ArmWeights(champion=50, challenger=50)))  # fmt: skip
    restored = _apply(during, ROUTER.restore(ROUTER.observe(during, ARMS), original))
    assert restored == obj


def test_a_split_with_no_traffic_left_is_refused() -> None:
    observed = ROUTER.observe(_split({"service": "web-v1"}, {"service": "web-v2"}), ARMS)
    with pytest.raises(RoutingError, match="no traffic"):
        ROUTER.patch_weights(observed, ArmWeights(champion=0, challenger=0))
