"""The one factory: which router a TrafficSpec gets, and what it refuses, by field."""

from __future__ import annotations

from typing import Any

import pytest

from afs.continuous.kube.api.v1alpha1 import TargetRef, TrafficSpec
from afs.continuous.kube.routing import RoutingError, router_for
from afs.continuous.kube.routing.gateway_api import GatewayAPIRouter
from afs.continuous.kube.routing.istio import IstioRouter
from afs.continuous.kube.routing.knative import KnativeRouter
from afs.continuous.kube.routing.kserve import KServeRouter
from afs.continuous.kube.routing.smi import SMIRouter


@pytest.mark.parametrize(
    ("provider", "api_version", "kind", "expected"),
    [
        ("gateway-api", "gateway.networking.k8s.io/v1", "HTTPRoute", GatewayAPIRouter),
        ("istio", "networking.istio.io/v1", "VirtualService", IstioRouter),
        ("smi", "split.smi-spec.io/v1alpha2", "TrafficSplit", SMIRouter),
        ("smi", "split.smi-spec.io/v1alpha4", "TrafficSplit", SMIRouter),
        ("gateway-api", "gateway.networking.k8s.io/v1beta1", "HTTPRoute", "traffic.targetRef"),
        ("gateway-api", "v1", "Service", "traffic.targetRef"),
        ("istio", "networking.istio.io/v1", "DestinationRule", "traffic.targetRef"),
        ("smi", "split.smi-spec.io/v1alpha1", "TrafficSplit", "v1alpha1 weights are quantities"),
        ("knative", "serving.knative.dev/v1", "Service", KnativeRouter),
        ("knative", "v1", "Service", "traffic.targetRef"),
        ("kserve", "serving.kserve.io/v1beta1", "InferenceService", KServeRouter),
        ("kserve", "serving.knative.dev/v1", "Service", "traffic.targetRef"),
    ],
)  # fmt: skip
def test_the_factory_gives_the_provider_s_router_or_refuses_by_field(
    provider: Any, api_version: str, kind: str, expected: type | str
) -> None:
    spec = TrafficSpec(
        provider=provider, target_ref=TargetRef(api_version=api_version, kind=kind, name="r")
    )
    if isinstance(expected, type):
        assert isinstance(router_for(spec), expected)
    else:
        with pytest.raises(RoutingError, match=expected):
            router_for(spec)


def test_create_revision_is_knative_s() -> None:
    route = TargetRef(api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute", name="r")
    with pytest.raises(RoutingError, match=r"traffic\.createRevision: only the knative provider"):
        router_for(TrafficSpec(provider="gateway-api", target_ref=route, create_revision=True))
    service = TargetRef(api_version="serving.knative.dev/v1", kind="Service", name="nayru")
    router = router_for(TrafficSpec(provider="knative", target_ref=service, create_revision=True))
    assert isinstance(router, KnativeRouter) and router.service == "nayru"


def test_a_route_name_is_istio_s_and_reaches_its_router() -> None:
    target = TargetRef(api_version="networking.istio.io/v1", kind="VirtualService", name="r")
    router = router_for(TrafficSpec(provider="istio", target_ref=target, route_name="models"))
    assert isinstance(router, IstioRouter) and router.route_name == "models"
    route = TargetRef(api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute", name="r")
    with pytest.raises(RoutingError, match=r"traffic\.routeName: only the istio provider"):
        router_for(TrafficSpec(provider="gateway-api", target_ref=route, route_name="models"))


def _doc_objects() -> list[dict[str, Any]]:
    import yaml

    from tests.docs_examples import ROOT, code_blocks

    blocks = code_blocks((ROOT / "docs" / "operator.md").read_text(), "yaml")
    kinds = ("VirtualService", "TrafficSplit", "Service", "InferenceService")
    return [
        d for d in map(yaml.safe_load, blocks)
        if d.get("kind") in kinds and d.get("apiVersion") != "v1"
    ]  # fmt: skip


@pytest.mark.parametrize("obj", _doc_objects(), ids=lambda o: str(o["kind"]))
def test_the_documented_serving_objects_hold_both_arms(obj: dict[str, Any]) -> None:
    """Each provider's example in docs/operator.md works with its router as written."""
    from afs.continuous.kube.routing import Arms

    provider = {"VirtualService": "istio", "TrafficSplit": "smi", "Service": "knative",
                "InferenceService": "kserve"}[obj["kind"]]  # fmt: skip
    target = TargetRef(api_version=obj["apiVersion"], kind=obj["kind"], name="nayru")
    router = router_for(TrafficSpec(provider=provider, target_ref=target))
    arms = Arms(  # the ModelVersions of examples/k8s (their uri is what KServe serves)
        "nayru-run-2", "nayru-run-3",
        champion_uri="s3://models/nayru/run-2/", challenger_uri="s3://models/nayru/run-3/",
    )  # fmt: skip
    observed = router.observe(obj, arms)
    assert observed.missing == () and len(observed.rules) == 1


def _example_tests() -> list[Any]:
    from tests.docs_examples import ROOT

    return sorted((ROOT / "examples" / "k8s").glob("abtest*.yaml"))


@pytest.mark.parametrize("path", _example_tests(), ids=lambda p: p.name)
def test_every_example_abtest_gets_its_provider_s_router(path: Any) -> None:
    import yaml

    from afs.continuous.kube.api.v1alpha1 import ABTestSpec

    spec = ABTestSpec.model_validate(yaml.safe_load(path.read_text())["spec"])
    assert router_for(spec.traffic).resource.kind == spec.traffic.target_ref.kind
