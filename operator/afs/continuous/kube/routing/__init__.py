"""Traffic routers: one interface (:mod:`.base`), one file per provider, one factory.

Callers use :func:`router_for` and never import a provider."""

from __future__ import annotations

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
    record_ops,
)
from afs.continuous.kube.routing.gateway_api import GatewayAPIRouter

__all__ = [
    "FIELD_MANAGER",
    "RECORD_ANNOTATION",
    "Arms",
    "JsonPatch",
    "Observed",
    "Resource",
    "RoutingError",
    "TrafficRouter",
    "record_ops",
    "router_for",
]

_ROUTERS: dict[str, TrafficRouter] = {"gateway-api": GatewayAPIRouter()}


def router_for(traffic: TrafficSpec) -> TrafficRouter:
    """The router for ``traffic``; a RoutingError naming the field when the provider is not
    available or the target is not the provider's kind."""
    router = _ROUTERS.get(traffic.provider)
    if router is None:
        raise RoutingError(
            f"traffic.provider: {traffic.provider!r} is not available in this version "
            f"(available: {', '.join(sorted(_ROUTERS))})"
        )
    target, resource = traffic.target_ref, router.resource
    if (target.api_version, target.kind) != (resource.api_version, resource.kind):
        raise RoutingError(
            f"traffic.targetRef: provider {traffic.provider!r} routes {resource.kind} "
            f"({resource.api_version}), not {target.kind} ({target.api_version})"
        )
    return router
