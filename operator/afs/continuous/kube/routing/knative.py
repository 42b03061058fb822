"""Knative ``Service`` (``serving.knative.dev/v1``): both arms pinned by revision.

An arm is the ``spec.traffic`` entry whose ``revisionName`` is the arm's serving name
(its revision). Percentages sum to 100 across the block (an entry without ``percent``
carries none), so the two arms share what they held, as on Istio; an entry that follows
``latestRevision`` or another revision keeps its part. The block is a list that
server-side apply replaces whole, so the percents are patched by index after ``test``
operations on the revision name and the percent as read. Knative's ``Ready`` condition at
the Service's generation says when a write has taken effect.

With ``traffic.createRevision``, a challenger the block does not name yet is made from the
Service's template: the template is named like the challenger (Knative's rule: the
Service's name, '-', a suffix) with ``AFS_MODEL_URI`` and ``AFS_MODEL_VERSION`` in its
first container, and the block gets the challenger pinned at 0%, tagged ``challenger`` (or
``challenger-2``, … when another entry holds that tag) so it has its own URL. A challenger
name that is not a DNS-1035 label (``nayru-v2.1``) cannot name a revision: refused. Not
while an entry follows ``latestRevision`` with a share (the new
revision would take it). A rollback gives back the traffic block exactly; the template
stays the challenger's (its revision keeps 0%) until the Service is applied again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from afs.continuous.kube.api.v1alpha1 import ArmWeights
from afs.continuous.kube.naming import is_dns_1035_label
from afs.continuous.kube.routing.base import (
    Arms,
    JsonPatch,
    Observed,
    Resource,
    Slot,
    SlotRouter,
    entry_slot,
    missing_arms,
    observation,
    opening_for,
    percent_weight_ops,
    ready_at_generation,
    single_rule,
)
from afs.continuous.kube.serving import MODEL_URI_ENV, MODEL_VERSION_ENV


class KnativeRouter(SlotRouter):
    resource = Resource("serving.knative.dev", "v1", "services", "Service")

    def __init__(self, *, service: str = "", create_revision: bool = False) -> None:
        self.service = service
        self.create_revision = create_revision

    def observe(self, obj: Mapping[str, Any] | None, arms: Arms) -> Observed:
        if obj is None:
            return Observed(found=False)
        traffic = (obj.get("spec") or {}).get("traffic") or []
        found = {
            str(entry.get("revisionName")): i
            for i, entry in enumerate(traffic)
            if isinstance(entry, dict) and entry.get("revisionName")
        }
        rules = single_rule(found, arms, lambda index: _slot(index, traffic), shared=True)
        accepted, waiting = ready_at_generation(obj, what="the Knative Service")
        observed = observation(
            obj, rules, missing_arms(arms, set(found), rules), accepted=accepted, waiting=waiting
        )
        if not self.create_revision or arms.champion not in found or arms.challenger in found:
            return observed
        problem = self._cannot_create(obj, arms, traffic)
        if problem:
            return replace(observed, unsupported=problem)
        opening = opening_for(
            list_path="/spec/traffic", index=found[arms.champion], entries=traffic,
            anchor_key="revisionName",
            entry={"revisionName": arms.challenger, "percent": 0, **_free_tag(traffic)},
            also=_template_ops(obj, arms), weight_key="percent",
        )  # fmt: skip
        return replace(observed, openings=(opening,))

    def _cannot_create(
        self, obj: Mapping[str, Any], arms: Arms, traffic: Sequence[Mapping[str, Any]]
    ) -> str:
        """Why the challenger's revision cannot be made from the template ('' if it can)."""
        if arms.challenger_uri is None:
            return "the challenger's ModelVersion has no uri to run"
        if not is_dns_1035_label(arms.challenger):
            return (
                f"revision name {arms.challenger!r} is not a DNS-1035 label (lowercase "
                "letters, digits and '-', starting with a letter), as Knative requires; set "
                "challenger.servingName"
            )
        if not arms.challenger.startswith(f"{self.service}-"):
            return (
                f"revision name {arms.challenger!r} must start with the Service's name and "
                f"'-' ({self.service}-…), as Knative requires; set challenger.servingName"
            )
        latest = sum(
            int(entry.get("percent") or 0) for entry in traffic
            if isinstance(entry, dict) and entry.get("latestRevision") is True
        )  # fmt: skip
        if latest:
            return (
                f"a traffic entry follows the latest revision with {latest}%: the new "
                "revision would take it; pin that traffic to a revision first"
            )
        containers = ((obj.get("spec") or {}).get("template") or {}).get("spec", {})
        if not (containers.get("containers") if isinstance(containers, dict) else None):
            return "spec.template has no container to run the challenger in"
        return ""

    def patch_weights(self, observed: Observed, weights: ArmWeights) -> JsonPatch:
        return percent_weight_ops(observed, weights, where="traffic block")


CHALLENGER_TAG = "challenger"


def _free_tag(traffic: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The challenger's tag (its own URL): ``challenger``, or ``challenger-2``, … when an
    entry holds it already (Knative refuses a tag twice)."""
    taken = {entry.get("tag") for entry in traffic if isinstance(entry, dict)}
    tag, n = CHALLENGER_TAG, 1
    while tag in taken:
        n += 1
        tag = f"{CHALLENGER_TAG}-{n}"
    return {"tag": tag}


def _slot(index: int, traffic: Sequence[Mapping[str, Any]]) -> Slot:
    return entry_slot("/spec/traffic", index, traffic, key="revisionName",
                      weight_key="percent", default=0)  # fmt: skip


def _template_ops(obj: Mapping[str, Any], arms: Arms) -> list[dict[str, Any]]:
    """The template becomes the challenger's revision: its name, and where its model is
    in the first container's environment (the rest of the template is the champion's)."""
    template = (obj.get("spec") or {}).get("template") or {}
    container = template["spec"]["containers"][0]
    ours = {MODEL_URI_ENV: arms.challenger_uri, MODEL_VERSION_ENV: arms.challenger}
    env = [e for e in container.get("env") or [] if e.get("name") not in ours]
    env += [{"name": name, "value": value} for name, value in ours.items()]
    metadata = template.get("metadata")
    name_op: dict[str, Any] = (
        {"op": "add", "path": "/spec/template/metadata/name", "value": arms.challenger}
        if isinstance(metadata, dict)
        else {"op": "add", "path": "/spec/template/metadata", "value": {"name": arms.challenger}}
    )
    return [name_op, {"op": "add", "path": "/spec/template/spec/containers/0/env", "value": env}]
