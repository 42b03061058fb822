"""Deploy mode in the Service-routed providers: the challenger's Service put in beside the
champion (weight 0), then one arm's entries taken out again — table-driven, each patch
applied (RFC 6902)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonpatch
import pytest

from afs.continuous.kube.api.v1alpha1 import ArmWeights
from afs.continuous.kube.routing import Arms, TrafficRouter, insertion_ops, removal_ops
from afs.continuous.kube.routing.gateway_api import GatewayAPIRouter
from afs.continuous.kube.routing.istio import IstioRouter
from afs.continuous.kube.routing.smi import SMIRouter
from tests.kube.provider_schemas import apply_checked

ARMS = Arms("nayru-run-2", "nayru-run-3")


def _http_route() -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "nayru"}, "spec": {"rules": [
        {"backendRefs": [{"name": "admin", "port": 80}]},
        {"backendRefs": [{"name": "nayru-run-2", "port": 80, "weight": 5}]},
    ]}}  # fmt: skip


def _virtual_service() -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "nayru"}, "spec": {"http": [
        {"name": "models", "route": [{"destination": {"host": "nayru-run-2",
                                                      "port": {"number": 80}}}]},
    ]}}  # fmt: skip


def _traffic_split() -> dict[str, Any]:
    return {"apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit",
            "metadata": {"name": "nayru"}, "spec": {"service": "nayru", "backends": [
        {"service": "other", "weight": 1}, {"service": "nayru-run-2", "weight": 100},
    ]}}  # fmt: skip


_apply = apply_checked  # every write checked against the provider's own schema


CASES: list[tuple[str, TrafficRouter, Callable[[], dict[str, Any]], ArmWeights]] = [
    ("gateway-api", GatewayAPIRouter(), _http_route, ArmWeights(champion=5, challenger=0)),
    ("istio", IstioRouter(), _virtual_service, ArmWeights(champion=100, challenger=0)),
    ("smi", SMIRouter(), _traffic_split, ArmWeights(champion=100, challenger=0)),
]


@pytest.mark.parametrize(("router", "make", "live"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_the_challenger_goes_in_beside_the_champion_at_zero(
    router: TrafficRouter, make: Callable[[], dict[str, Any]], live: ArmWeights
) -> None:
    obj = make()
    observed = router.observe(obj, ARMS)
    assert observed.missing == ("nayru-run-3",) and observed.openings
    inserted = _apply(obj, insertion_ops(observed))
    after = router.observe(inserted, ARMS)
    assert after.missing == () and after.weights == [live] and not after.openings


@pytest.mark.parametrize(("router", "make"), [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_removing_the_challenger_gives_back_the_route(
    router: TrafficRouter, make: Callable[[], dict[str, Any]]
) -> None:
    obj = make()
    inserted = _apply(obj, insertion_ops(router.observe(obj, ARMS)))
    removed = _apply(inserted, removal_ops(router.observe(inserted, ARMS), champion=False))
    if isinstance(router, IstioRouter):  # a lone champion's weight now says its 100
        obj["spec"]["http"][0]["route"][0]["weight"] = 100
    assert removed == obj


@pytest.mark.parametrize(("router", "make"), [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_after_a_promotion_the_old_champion_s_entry_goes(
    router: TrafficRouter, make: Callable[[], dict[str, Any]]
) -> None:
    obj = make()
    inserted = _apply(obj, insertion_ops(router.observe(obj, ARMS)))
    observed = router.observe(inserted, ARMS)
    promoted = _apply(inserted, [*router.promote(observed), *removal_ops(observed, champion=True)])
    swapped = router.observe(promoted, Arms("nayru-run-3", "nayru-run-2"))
    assert swapped.missing == ("nayru-run-2",)  # only the new champion is left


def test_the_istio_entry_is_the_challenger_s_service_on_the_champion_s_port() -> None:
    obj = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {},
           "spec": {"http": [{"route": [
        {"destination": {"host": "nayru-run-2", "port": {"number": 8080}}, "weight": 80,
         "headers": {"request": {"set": {"x-arm": "a"}}}},
        {"destination": {"host": "mirror"}, "weight": 20},
    ]}]}}  # fmt: skip
    inserted = _apply(obj, insertion_ops(IstioRouter().observe(obj, ARMS)))
    entry = inserted["spec"]["http"][0]["route"][2]
    assert entry["destination"] == {"host": "nayru-run-3", "port": {"number": 8080}}
    assert entry["weight"] == 0 and inserted["spec"]["http"][0]["route"][0]["weight"] == 80


def test_nothing_is_inserted_where_the_challenger_is_already_routed() -> None:
    obj = _http_route()
    obj["spec"]["rules"][0]["backendRefs"].append({"name": "nayru-run-3"})
    assert GatewayAPIRouter().observe(obj, ARMS).openings == ()


def test_an_insertion_tests_the_champion_s_entry_first() -> None:
    obj = _http_route()
    ops = insertion_ops(GatewayAPIRouter().observe(obj, ARMS))
    moved = copy.deepcopy(obj)
    moved["spec"]["rules"][1]["backendRefs"][0]["name"] = "someone-else"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(moved, ops)
