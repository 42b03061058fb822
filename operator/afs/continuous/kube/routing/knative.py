"""Knative ``Service`` (``serving.knative.dev/v1``): both arms pinned by revision.

An arm is the ``spec.traffic`` entry whose ``revisionName`` is the arm's serving name
(its revision). Percentages sum to 100 across the block (an entry without ``percent``
carries none), so the two arms share what they held, as on Istio; an entry that follows
``latestRevision`` or another revision keeps its part. The block is a list that
server-side apply replaces whole, so the percents are patched by index after ``test``
operations on the revision name and the percent as read. Knative's ``Ready`` condition at
the Service's generation says when a write has taken effect. Creating the challenger's
revision from the champion's template is not this router's work: both revisions must
exist and be named in the block before the test starts (``BackendNotFound`` until then).
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
    Slot,
    SlotRouter,
    int_weight,
    missing_arms,
    observation,
    percent_weight_ops,
    ready_at_generation,
    single_rule,
)


class KnativeRouter(SlotRouter):
    resource = Resource("serving.knative.dev", "v1", "services", "Service")

    def observe(self, obj: Mapping[str, Any] | None, arms: Arms) -> Observed:
        if obj is None:
            return Observed(found=False)
        traffic = (obj.get("spec") or {}).get("traffic") or []
        found = {
            str(entry.get("revisionName")): i
            for i, entry in enumerate(traffic)
            if isinstance(entry, dict) and entry.get("revisionName")
        }
        rules = single_rule(found, arms, lambda index: _slot(index, traffic))
        accepted, waiting = ready_at_generation(obj, what="the Knative Service")
        return observation(
            obj, rules, missing_arms(arms, set(found), rules), accepted=accepted, waiting=waiting
        )

    def patch_weights(self, observed: Observed, weights: ArmWeights) -> JsonPatch:
        return percent_weight_ops(observed, weights, where="traffic block")


def _slot(index: int, traffic: Sequence[Mapping[str, Any]]) -> Slot:
    base = f"/spec/traffic/{index}"
    return Slot(
        path=f"{base}/percent",
        anchor=(f"{base}/revisionName", traffic[index].get("revisionName")),
        weight=int_weight(traffic[index].get("percent")),
        default=0,
    )
