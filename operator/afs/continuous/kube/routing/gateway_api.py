"""Gateway API ``HTTPRoute`` (``gateway.networking.k8s.io/v1``).

An arm is the ``backendRefs`` entry whose ``name`` is the arm's serving name, in every rule
that holds both arms. Weights are relative, 0 is allowed and unset means 1. ``rules`` and
``backendRefs`` are atomic lists (server-side apply would replace them whole), so the
weights are patched by index, after reading, with ``test`` operations on what was read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from afs.continuous.kube.api.v1alpha1 import ArmWeights
from afs.continuous.kube.routing.base import (
    Arms,
    JsonPatch,
    Observed,
    Opening,
    Resource,
    RuleSlots,
    Slot,
    SlotRouter,
    entry_slot,
    missing_arms,
    observation,
    opening_for,
    relative_weight_ops,
)

DEFAULT_WEIGHT = 1


class GatewayAPIRouter(SlotRouter):
    resource = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")

    def observe(self, obj: Mapping[str, Any] | None, arms: Arms) -> Observed:
        if obj is None:
            return Observed(found=False)
        rules: list[RuleSlots] = []
        openings: list[Opening] = []
        seen: set[str] = set()
        for index, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
            refs = (rule or {}).get("backendRefs") or []
            names = {str(ref.get("name")): i for i, ref in enumerate(refs) if isinstance(ref, dict)}
            seen.update(names)
            if arms.champion in names and arms.challenger not in names:
                at = names[arms.champion]
                openings.append(opening_for(
                    list_path=f"/spec/rules/{index}/backendRefs", index=at, entries=refs,
                    anchor_key="name", entry={**refs[at], "name": arms.challenger, "weight": 0},
                    rule=index,
                ))  # fmt: skip
            if arms.champion in names and arms.challenger in names:
                rules.append(
                    RuleSlots(
                        rule=index,
                        champion=_slot(index, names[arms.champion], refs),
                        challenger=_slot(index, names[arms.challenger], refs),
                    )
                )
        accepted, waiting = _accepted(obj)
        return observation(
            obj, rules, missing_arms(arms, seen, rules), accepted=accepted, waiting=waiting,
            openings=() if arms.challenger in seen else openings,
        )  # fmt: skip

    def patch_weights(self, observed: Observed, weights: ArmWeights) -> JsonPatch:
        return relative_weight_ops(observed, weights)


def _slot(rule: int, index: int, refs: Sequence[Mapping[str, Any]]) -> Slot:
    return entry_slot(f"/spec/rules/{rule}/backendRefs", index, refs, key="name",
                      default=DEFAULT_WEIGHT)  # fmt: skip


def _accepted(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """Accepted by every parent that reports, at the route's current generation (a route
    no controller reports on yet counts as accepted: there is nothing to wait for)."""
    generation = (obj.get("metadata") or {}).get("generation")
    for parent in (obj.get("status") or {}).get("parents") or []:
        ref = (parent.get("parentRef") or {}).get("name", "?")
        accepted = next(
            (c for c in parent.get("conditions") or [] if c.get("type") == "Accepted"), None
        )
        if accepted is None:
            continue
        if accepted.get("status") != "True":
            return False, f"parent {ref} has not accepted the route: {accepted.get('reason', '')}"
        seen = accepted.get("observedGeneration")
        if isinstance(generation, int) and isinstance(seen, int) and seen < generation:
            return False, f"parent {ref} has accepted generation {seen}, not {generation} yet"
    return True, ""
