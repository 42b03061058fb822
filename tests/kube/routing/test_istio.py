"""The VirtualService router: object read → patch written, table-driven. Every patch is
applied with jsonpatch (RFC 6902, as the API server applies it) to check what it does.
Objects follow the shapes of Istio's traffic-shifting documentation."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from afs.continuous.kube.api.v1alpha1 import ArmWeights, RuleWeights
from afs.continuous.kube.routing import Arms, RoutingError
from afs.continuous.kube.routing.istio import IstioRouter
from tests.kube.provider_schemas import apply_checked

ROUTER = IstioRouter()
ARMS = Arms("v1", "v2")


def _vs(
    *routes: list[dict[str, Any]], names: list[str] | None = None, status: Any = None
) -> dict[str, Any]:
    http = [
        {"match": [{"uri": {"prefix": "/"}}], "route": route, "timeout": "5s"} for route in routes
    ]
    for http_route, name in zip(http, names or [], strict=False):
        http_route["name"] = name
    obj: dict[str, Any] = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "generation": 4},
        "spec": {"hosts": ["reviews"], "http": http},
    }
    if status is not None:
        obj["status"] = status
    return obj


def _subset(name: str, weight: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"destination": {"host": "reviews", "subset": name}}
    if weight is not None:
        entry["weight"] = weight
    return entry


def _host(host: str, weight: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"destination": {"host": host, "port": {"number": 9080}}}
    if weight is not None:
        entry["weight"] = weight
    return entry


_apply = apply_checked  # every write checked against the provider's own schema


def _weights(obj: dict[str, Any]) -> list[list[int | None]]:
    return [[entry.get("weight") for entry in http["route"]] for http in obj["spec"]["http"]]


@pytest.mark.parametrize(
    ("routes", "live", "missing"),
    [
        ([[_subset("v1", 100), _subset("v2", 0)]], [ArmWeights(champion=100, challenger=0)], ()),
        ([[_host("v1.ml.svc.cluster.local", 90), _host("v2", 10)]],
         [ArmWeights(champion=90, challenger=10)], ()),
        ([[_subset("v1", 80), _subset("canary", 20)], [_subset("v1", 70), _subset("v2", 30)]],
         [ArmWeights(champion=70, challenger=30)], ()),
        ([[_subset("v1")]], [], ("v2",)),
        ([[_subset("v1")], [_subset("v2")]], [], ("v1", "v2")),
        ([[_subset("other")]], [], ("v1", "v2")),
    ],
    ids=["subsets", "hosts-short-and-qualified", "only-routes-with-both", "no-challenger",
         "arms-in-different-routes", "neither"],
)  # fmt: skip
def test_observe_finds_both_arms_in_every_route_that_holds_them(
    routes: list[list[dict[str, Any]]], live: list[ArmWeights], missing: tuple[str, ...]
) -> None:
    observed = ROUTER.observe(_vs(*routes), ARMS)
    assert observed.found and observed.weights == live and observed.missing == missing


def test_a_route_name_limits_the_test_to_that_route() -> None:
    obj = _vs([_subset("v1", 100), _subset("v2", 0)], [_subset("v1", 100), _subset("v2", 0)],
              names=["public", "internal"])  # fmt: skip
    observed = IstioRouter(route_name="internal").observe(obj, ARMS)
    assert [rule.rule for rule in observed.rules] == [1]
    after = _apply(obj, IstioRouter(route_name="internal").patch_weights(
        observed, ArmWeights(champion=90, challenger=10)))  # fmt: skip
    assert _weights(after) == [[100, 0], [90, 10]]
    misspelt = IstioRouter(route_name="internl").observe(obj, ARMS)
    assert misspelt.rules == () and misspelt.missing == ("http route 'internl'",)


@pytest.mark.parametrize(
    ("routes", "step", "expected"),
    [
        # the two arms alone: the step as written
        ([[_subset("v1", 100), _subset("v2", 0)]], (90, 10), [[90, 10]]),
        # a third destination keeps its 20: the arms share their 80
        ([[_subset("v1", 80), _subset("mirror", 20), _subset("v2", 0)]], (90, 10),
         [[72, 20, 8]]),
        ([[_subset("v1", 80), _subset("mirror", 20), _subset("v2", 0)]], (0, 100),
         [[0, 20, 80]]),
    ],
    ids=["two-arms", "third-destination", "third-destination-promoted"],
)  # fmt: skip
def test_weights_keep_every_route_at_100(
    routes: list[list[dict[str, Any]]], step: tuple[int, int], expected: list[list[int]]
) -> None:
    obj = _vs(*routes)
    observed = ROUTER.observe(obj, ARMS)
    weights = ArmWeights(champion=step[0], challenger=step[1])
    after = _apply(obj, ROUTER.patch_weights(observed, weights))
    assert _weights(after) == expected
    assert all(sum(w for w in route if w) == 100 for route in _weights(after))
    assert after["spec"]["http"][0]["timeout"] == "5s"  # nothing else touched


def test_every_write_tests_the_destination_and_weight_as_read() -> None:
    obj = _vs([_subset("v1", 100), _subset("v2", 0)])
    ops = ROUTER.patch_weights(ROUTER.observe(obj, ARMS), ArmWeights(champion=90, challenger=10))
    assert ops[0] == {"op": "test", "path": "/spec/http/0/route/0/destination",
                      "value": {"host": "reviews", "subset": "v1"}}  # fmt: skip
    assert {"op": "test", "path": "/spec/http/0/route/0/weight", "value": 100} in ops
    moved = copy.deepcopy(obj)
    moved["spec"]["http"][0]["route"][0]["destination"]["subset"] = "v3"  # someone else's edit
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        _apply(moved, ops)


def test_restore_puts_back_the_original_exactly_unset_included() -> None:
    obj = _vs([_subset("v1"), _subset("v2")])  # weights unset (Istio then splits evenly)
    observed = ROUTER.observe(obj, ARMS)
    original = observed.original()
    assert original == [RuleWeights(rule=0, champion=None, challenger=None)]
    with pytest.raises(RoutingError, match="hold no share"):  # 0 + 0 to divide
        ROUTER.patch_weights(observed, ArmWeights(champion=90, challenger=10))
    obj = _vs([_subset("v1", 100), _subset("v2", 0)])
    during = _apply(obj, ROUTER.patch_weights(ROUTER.observe(obj, ARMS),
                                              ArmWeights(champion=50, challenger=50)))  # fmt: skip
    restored = _apply(during, ROUTER.restore(ROUTER.observe(during, ARMS),
                                             ROUTER.observe(obj, ARMS).original()))  # fmt: skip
    assert restored == obj


def test_both_arms_at_zero_are_refused() -> None:
    observed = ROUTER.observe(_vs([_subset("v1", 100), _subset("v2", 0)]), ARMS)
    with pytest.raises(RoutingError, match="no traffic"):
        ROUTER.patch_weights(observed, ArmWeights(champion=0, challenger=0))


@pytest.mark.parametrize(
    ("status", "accepted"),
    [
        (None, True),  # config-status tracking off: nothing to wait for
        ({"observedGeneration": "4", "conditions": [{"type": "Reconciled", "status": "True"}]},
         True),
        ({"observedGeneration": "3", "conditions": [{"type": "Reconciled", "status": "True"}]},
         False),
        ({"conditions": [{"type": "Reconciled", "status": "False", "message": "pushing"}]},
         False),
    ],
)  # fmt: skip
def test_a_write_counts_once_istio_distributed_it(
    status: dict[str, Any] | None, accepted: bool
) -> None:
    obj = _vs([_subset("v1", 100), _subset("v2", 0)], status=status)
    observed = ROUTER.observe(obj, ARMS)
    assert observed.accepted is accepted and bool(observed.waiting) is not accepted
