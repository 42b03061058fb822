"""Traffic routers: one interface (:mod:`.base`), one file per provider, one factory.

Callers use :func:`router_for` and never import a provider."""

from __future__ import annotations

from collections.abc import Callable

from afs.continuous.kube.api.v1alpha1 import TrafficSpec
from afs.continuous.kube.routing.base import (
    FIELD_MANAGER,
    RECORD_ANNOTATION,
    Arms,
    JsonPatch,
    Observed,
    Resource,
    RoutingError,
    TrafficRouter,
    insertion_ops,
    record_ops,
    removal_ops,
)
from afs.continuous.kube.routing.gateway_api import GatewayAPIRouter
from afs.continuous.kube.routing.istio import IstioRouter
from afs.continuous.kube.routing.knative import KnativeRouter
from afs.continuous.kube.routing.kserve import KServeRouter
from afs.continuous.kube.routing.smi import SMIRouter

__all__ = [
    "FIELD_MANAGER",
    "RECORD_ANNOTATION",
    "SERVICE_ROUTED",
    "Arms",
    "JsonPatch",
    "Observed",
    "Resource",
    "RoutingError",
    "TrafficRouter",
    "insertion_ops",
    "record_ops",
    "removal_ops",
    "router_for",
]


def _smi(traffic: TrafficSpec) -> TrafficRouter:
    """SMI has several API versions in use; the router speaks the target's."""
    return SMIRouter(traffic.target_ref.api_version.rpartition("/")[2])


_ROUTERS: dict[str, Callable[[TrafficSpec], TrafficRouter]] = {
    "gateway-api": lambda traffic: GatewayAPIRouter(),
    "istio": lambda traffic: IstioRouter(route_name=traffic.route_name),
    "knative": lambda traffic: KnativeRouter(
        service=traffic.target_ref.name, create_revision=traffic.create_revision
    ),
    "kserve": lambda traffic: KServeRouter(),
    "smi": _smi,
}


#: the providers that route to Services, where deploy mode's Services are put in the route
SERVICE_ROUTED = frozenset({"gateway-api", "istio", "smi"})


def router_for(traffic: TrafficSpec) -> TrafficRouter:
    """The router for ``traffic``; a RoutingError naming the field when the provider is not
    available or the target is not the provider's kind."""
    make = _ROUTERS.get(traffic.provider)
    if make is None:
        raise RoutingError(
            f"traffic.provider: {traffic.provider!r} is not available in this version "
            f"(available: {', '.join(sorted(_ROUTERS))})"
        )
    if traffic.route_name is not None and traffic.provider != "istio":
        raise RoutingError(
            f"traffic.routeName: only the istio provider has named routes, not {traffic.provider!r}"
        )
    if traffic.create_revision and traffic.provider != "knative":
        raise RoutingError(
            f"traffic.createRevision: only the knative provider creates revisions, not "
            f"{traffic.provider!r}"
        )
    router = make(traffic)
    target, resource = traffic.target_ref, router.resource
    if (target.api_version, target.kind) != (resource.api_version, resource.kind):
        raise RoutingError(
            f"traffic.targetRef: provider {traffic.provider!r} routes {resource.kind} "
            f"({resource.api_version}), not {target.kind} ({target.api_version})"
        )
    return router
