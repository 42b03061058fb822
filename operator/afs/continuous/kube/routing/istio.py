"""Istio ``VirtualService`` (``networking.istio.io/v1``).

An arm is the ``spec.http[].route[]`` destination whose ``subset`` is the arm's serving
name (one host, a subset per version), else whose ``host`` is (a Service per version,
short or fully qualified), in every HTTP route that holds both — or only in the route
named by ``traffic.routeName``. Istio's weights are percentages of the route (0–100,
summing to 100; a lone destination's unset weight means 100), so the two arms share what
they held between them: with a third destination in the route at 20, a 90/10 step writes
72/8 and the route still sums to 100. ``http`` and ``route`` are lists that server-side
apply would replace whole, so the weights are patched by index after ``test`` operations
on the destination and the weight as read.
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
    percent_weight_ops,
)

FULL = 100


class IstioRouter(SlotRouter):
    resource = Resource("networking.istio.io", "v1", "virtualservices", "VirtualService")

    def __init__(self, route_name: str | None = None) -> None:
        self.route_name = route_name

    def observe(self, obj: Mapping[str, Any] | None, arms: Arms) -> Observed:
        if obj is None:
            return Observed(found=False)
        rules: list[RuleSlots] = []
        openings: list[Opening] = []
        seen: set[str] = set()
        named = False
        for index, http in enumerate((obj.get("spec") or {}).get("http") or []):
            if self.route_name is not None and (http or {}).get("name") != self.route_name:
                continue
            named = True
            route = (http or {}).get("route") or []
            found = {
                name: i
                for i, entry in enumerate(route)
                if isinstance(entry, dict)
                for name in _names(entry.get("destination") or {})
            }
            seen.update(found)
            if arms.champion in found and arms.challenger not in found:
                openings.append(_opening(index, found[arms.champion], route, arms.challenger))
            if arms.champion in found and arms.challenger in found:
                if found[arms.champion] == found[arms.challenger]:
                    continue  # one destination answers to both names: not two arms
                rules.append(
                    RuleSlots(
                        rule=index,
                        champion=_slot(index, found[arms.champion], route),
                        challenger=_slot(index, found[arms.challenger], route),
                        shared=True,
                    )
                )
        missing = missing_arms(arms, seen, rules)
        if self.route_name is not None and not named:  # say what is missing: the route
            missing = (f"http route {self.route_name!r}",)
        accepted, waiting = _reconciled(obj)
        return observation(
            obj, rules, missing, accepted=accepted, waiting=waiting,
            openings=() if arms.challenger in seen else openings,
        )  # fmt: skip

    def patch_weights(self, observed: Observed, weights: ArmWeights) -> JsonPatch:
        return percent_weight_ops(observed, weights, where="http route")


def _names(destination: Mapping[str, Any]) -> set[str]:
    """The serving names a destination answers to: its subset, else its host (and the
    host's first label, for ``name.namespace.svc.cluster.local``)."""
    subset = destination.get("subset")
    if isinstance(subset, str) and subset:
        return {subset}
    host = destination.get("host")
    if not isinstance(host, str) or not host:
        return set()
    return {host, host.split(".", 1)[0]}


def _opening(rule: int, index: int, route: Sequence[Mapping[str, Any]], challenger: str) -> Opening:
    """The challenger's Service as a destination of its own (no subset: deploy mode runs
    a Service per version) on the champion's port. A lone champion's unset weight meant
    100; with a second destination it must say so."""
    champion = route[index]
    destination = {"host": challenger}
    port = (champion.get("destination") or {}).get("port")
    if port is not None:
        destination["port"] = port
    also = []
    if len(route) == 1 and champion.get("weight") is None:
        also.append({"op": "add", "path": f"/spec/http/{rule}/route/{index}/weight", "value": FULL})
    return opening_for(
        list_path=f"/spec/http/{rule}/route", index=index, entries=route,
        anchor_key="destination", entry={**champion, "destination": destination, "weight": 0},
        also=also, rule=rule,
    )  # fmt: skip


def _slot(rule: int, index: int, route: Sequence[Mapping[str, Any]]) -> Slot:
    return entry_slot(f"/spec/http/{rule}/route", index, route, key="destination",
                      default=FULL if len(route) == 1 else 0)  # fmt: skip


def _reconciled(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """Istio reports ``Reconciled`` only with config-status tracking on; without it there
    is nothing to wait for. With it, wait until the current generation is distributed."""
    generation = (obj.get("metadata") or {}).get("generation")
    status = obj.get("status") or {}
    condition = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Reconciled"), None
    )
    if condition is None:
        return True, ""
    if condition.get("status") != "True":
        return False, f"Istio has not distributed the route yet: {condition.get('message', '')}"
    seen = str(status.get("observedGeneration", ""))  # an int64: text in Istio's JSON
    if isinstance(generation, int) and seen.isdigit() and int(seen) < generation:
        return False, f"Istio has distributed generation {seen}, not {generation} yet"
    return True, ""
