"""SMI ``TrafficSplit`` (``split.smi-spec.io``): ``v1alpha2`` as Linkerd's linkerd-smi
serves it (beside ``v1alpha1``, whose weights are quantities), or ``v1alpha4``, the only
version smi-sdk-go's final CRD serves (``v1alpha3`` as older releases served it); the
router speaks the version the ABTest's ``targetRef`` names.

A TrafficSplit has one list of ``spec.backends`` (``service`` and an integer ``weight``,
relative to the others); an arm is the backend whose ``service`` is the arm's serving
name. One rule, so the ``rule`` index is always 0. The list is replaced whole by
server-side apply, so the weights are patched by index after ``test`` operations on the
service and the weight as read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from afs.continuous.kube.api.v1alpha1 import ArmWeights
from afs.continuous.kube.routing.base import (
    Arms,
    JsonPatch,
    Observed,
    Resource,
    RoutingError,
    Slot,
    SlotRouter,
    entry_slot,
    missing_arms,
    observation,
    opening_for,
    relative_weight_ops,
    single_rule,
)

VERSIONS = ("v1alpha2", "v1alpha3", "v1alpha4")


class SMIRouter(SlotRouter):
    def __init__(self, version: str = "v1alpha2") -> None:
        if version not in VERSIONS:
            raise RoutingError(
                f"traffic.targetRef: TrafficSplit {version} is not supported "
                f"(supported: {', '.join(VERSIONS)}; v1alpha1 weights are quantities)"
            )
        self.resource = Resource("split.smi-spec.io", version, "trafficsplits", "TrafficSplit")

    def observe(self, obj: Mapping[str, Any] | None, arms: Arms) -> Observed:
        if obj is None:
            return Observed(found=False)
        backends = (obj.get("spec") or {}).get("backends") or []
        found = {str(b.get("service")): i for i, b in enumerate(backends) if isinstance(b, dict)}
        rules = single_rule(found, arms, lambda index: _slot(index, backends))
        openings = []
        if arms.champion in found and arms.challenger not in found:
            at = found[arms.champion]
            openings.append(opening_for(
                list_path="/spec/backends", index=at, entries=backends, anchor_key="service",
                entry={**backends[at], "service": arms.challenger, "weight": 0},
            ))  # fmt: skip
        return observation(obj, rules, missing_arms(arms, set(found), rules), openings=openings)

    def patch_weights(self, observed: Observed, weights: ArmWeights) -> JsonPatch:
        return relative_weight_ops(observed, weights)


def _slot(index: int, backends: Sequence[Mapping[str, Any]]) -> Slot:
    return entry_slot("/spec/backends", index, backends, key="service", default=0)
