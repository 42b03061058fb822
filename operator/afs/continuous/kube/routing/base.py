"""What every traffic provider does, and the pieces they share.

A router knows one kind of serving resource and nothing of A/B tests: where the two arms'
weights sit in it (:meth:`TrafficRouter.observe`) and how to write them
(:meth:`~TrafficRouter.patch_weights`, :meth:`~TrafficRouter.restore`,
:meth:`~TrafficRouter.promote`). Every builder is pure: object read in, JSON patch out.
Each patch starts with ``test`` operations on what was read, so that if another writer
changed the resource in between, the API server refuses the patch instead of our write
silently undoing theirs; the controller re-reads and decides again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from afs.continuous.kube.api.v1alpha1 import GROUP, ArmWeights, RuleWeights

#: the annotation on the serving resource recording what the test wrote, in the same
#: patch as the weights (so a restarted operator knows what it last wrote, atomically)
RECORD_ANNOTATION = f"{GROUP}/abtest"

#: who the operator's writes to other teams' resources show as (``managedFields``)
FIELD_MANAGER = "afs-continuous"

JsonPatch = list[dict[str, Any]]


class RoutingError(ValueError):
    """The serving resource cannot carry the test as it is (the message says why)."""


@dataclass(frozen=True)
class Resource:
    """Where a router's kind lives in the API."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class Arms:
    """The two arms' backend names in the serving resource, and their ModelVersions'
    ``uri`` for the providers that stand a model up from it (KServe)."""

    champion: str
    challenger: str
    champion_uri: str | None = None
    challenger_uri: str | None = None
    champion_usage: str | None = None
    challenger_usage: str | None = None
    """The ``model`` each arm's usage records are logged under (set in the model's
    environment where the router starts the model itself: KServe)."""


@dataclass(frozen=True)
class Slot:
    """Where one arm's weight lives: the JSON pointer of the weight, the pointer and value
    that identify the entry (tested before every write), the weight as read (None: the
    field is unset) and what unset means to the provider."""

    path: str
    anchor: tuple[str, Any]
    weight: int | None
    default: int

    @property
    def effective(self) -> int:
        return self.default if self.weight is None else self.weight


@dataclass(frozen=True)
class RuleSlots:
    """One routing rule that holds both arms."""

    rule: int
    champion: Slot
    challenger: Slot
    shared: bool = False
    """Percent providers (Istio, Knative): the arms divide the share they hold between
    them and other entries keep theirs, so the weights written are a split of that share,
    not the planned weights themselves."""

    @property
    def weights(self) -> ArmWeights:
        return ArmWeights(champion=self.champion.effective, challenger=self.challenger.effective)

    def split(self, weights: ArmWeights) -> tuple[int, int]:
        """The two weights that ``weights`` writes in this rule (champion, challenger)."""
        total = weights.champion + weights.challenger
        if not self.shared:
            return weights.champion, weights.challenger
        share = self.champion.effective + self.challenger.effective
        champion = round(share * weights.champion / total) if total > 0 else 0
        return champion, share - champion

    def holds(self, weights: ArmWeights) -> bool:
        """Whether this rule is as ``weights`` would write it (a third entry's share is
        its own: 72/20/8 holds a 90/10 step)."""
        return self.split(weights) == (self.champion.effective, self.challenger.effective)


@dataclass(frozen=True)
class Opening:
    """Deploy mode: a rule that holds the champion but not the challenger. The challenger's
    entry goes at the end of ``list_path`` (a copy of the champion's, at weight 0, plus
    whatever the champion's needs set so the rule keeps its traffic), after ``test``
    operations on the champion's entry as read."""

    list_path: str
    anchor: tuple[str, Any]
    entry: Mapping[str, Any]
    also: tuple[dict[str, Any], ...] = ()
    """Operations on the champion's entry that must come with the new one."""
    original: RuleWeights | None = None
    """The rule's weights before the insertion (a rollback gives back these, not a weight
    the insertion had to add)."""


@dataclass(frozen=True)
class Observed:
    """A serving resource as read: whether it exists, the rules holding both arms, the
    backends that are missing, whether its controller accepted the current generation,
    and what our last write recorded on it."""

    found: bool
    rules: tuple[RuleSlots, ...] = ()
    missing: tuple[str, ...] = ()
    accepted: bool = True
    waiting: str = ""
    unsupported: str = ""
    """Why the resource cannot carry a test at all as it is (nothing is written)."""
    openings: tuple[Opening, ...] = ()
    """Deploy mode: where the challenger's entry can be added (see :class:`Opening`)."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    managed_fields: Sequence[Mapping[str, Any]] = ()
    resource_version: str | None = None

    @property
    def weights(self) -> list[ArmWeights]:
        return [rule.weights for rule in self.rules]

    def holds(self, weights: ArmWeights) -> bool:
        """Whether every rule is as ``weights`` would write it (see :meth:`RuleSlots.holds`)."""
        return all(rule.holds(weights) for rule in self.rules)

    @property
    def record(self) -> dict[str, Any] | None:
        """Our record on the resource (see :data:`RECORD_ANNOTATION`), if readable."""
        raw = self.annotations.get(RECORD_ANNOTATION)
        try:
            value = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def original(self) -> list[RuleWeights]:
        """The weights to restore later, exactly as read (unset stays unset)."""
        return [
            RuleWeights(rule=r.rule, champion=r.champion.weight, challenger=r.challenger.weight)
            for r in self.rules
        ]

    def last_writer(self, path_prefix: str, *, other_than: str) -> str | None:
        """The field manager, other than ``other_than`` (us), that most recently wrote
        under ``path_prefix`` (e.g. ``f:spec``), when the server reports ``managedFields``."""
        writers = [
            entry for entry in self.managed_fields
            if path_prefix in (entry.get("fieldsV1") or {})
            and entry.get("manager") not in (None, "", other_than)
        ]  # fmt: skip
        if not writers:
            return None
        newest = max(writers, key=lambda entry: str(entry.get("time") or ""))
        return str(newest["manager"])


class TrafficRouter(Protocol):
    """One kind of serving resource (one file per provider, see the factory)."""

    resource: Resource

    def observe(self, obj: Mapping[str, Any] | None, arms: Arms) -> Observed:
        """The live weights of both arms, and whether the resource is usable."""
        ...

    def patch_weights(self, observed: Observed, weights: ArmWeights) -> JsonPatch:
        """Set both arms' weights in every rule that holds them; nothing else."""
        ...

    def restore(self, observed: Observed, original: Sequence[RuleWeights]) -> JsonPatch:
        """Put back the weights the resource had before the test."""
        ...

    def promote(self, observed: Observed) -> JsonPatch:
        """Finish a promotion the provider's way (all traffic to the challenger)."""
        ...


def escape(key: str) -> str:
    """A JSON pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def set_slot(slot: Slot, weight: int) -> JsonPatch:
    """Test the entry and the weight as read, then write ``weight`` (nothing when equal)."""
    if slot.weight == weight:
        return []
    tests: JsonPatch = [{"op": "test", "path": slot.anchor[0], "value": slot.anchor[1]}]
    if slot.weight is None:
        return [*tests, {"op": "add", "path": slot.path, "value": weight}]
    return [
        *tests,
        {"op": "test", "path": slot.path, "value": slot.weight},
        {"op": "replace", "path": slot.path, "value": weight},
    ]


def unset_slot(slot: Slot) -> JsonPatch:
    """Remove the weight field so the provider's default applies again."""
    if slot.weight is None:
        return []
    return [
        {"op": "test", "path": slot.anchor[0], "value": slot.anchor[1]},
        {"op": "test", "path": slot.path, "value": slot.weight},
        {"op": "remove", "path": slot.path},
    ]


def record_ops(observed: Observed, record: Mapping[str, Any]) -> JsonPatch:
    """Write our record in the same patch as the weights, testing the one read (so two
    operators, or an operator and its restarted self, cannot both write)."""
    value = json.dumps(dict(record), sort_keys=True, separators=(",", ":"))
    if not observed.annotations:
        # the whole map is written: only onto the object as read, or annotations another
        # writer added since would be replaced (a JSON patch cannot test for absence)
        version: JsonPatch = (
            [{"op": "test", "path": "/metadata/resourceVersion",
              "value": observed.resource_version}]
            if observed.resource_version is not None else []
        )  # fmt: skip
        return [
            *version,
            {"op": "add", "path": "/metadata/annotations", "value": {RECORD_ANNOTATION: value}},
        ]
    path = f"/metadata/annotations/{escape(RECORD_ANNOTATION)}"
    previous = observed.annotations.get(RECORD_ANNOTATION)
    if previous is None:
        return [{"op": "add", "path": path, "value": value}]
    return [
        {"op": "test", "path": path, "value": previous},
        {"op": "replace", "path": path, "value": value},
    ]


def missing_arms(arms: Arms, seen: set[str], rules: Sequence[RuleSlots]) -> tuple[str, ...]:
    """What to name when no rule holds both arms: the arms absent altogether, else both
    (each is somewhere, never together)."""
    if rules:
        return ()
    absent = tuple(name for name in (arms.champion, arms.challenger) if name not in seen)
    return absent or (arms.champion, arms.challenger)


def restore_ops(observed: Observed, original: Sequence[RuleWeights]) -> JsonPatch:
    """Put back each rule's weights exactly as read before the test (unset again where they
    were unset); a rule that appeared during the test is left as it is."""
    before = {entry.rule: entry for entry in original}
    ops: JsonPatch = []
    for rule in observed.rules:
        entry = before.get(rule.rule)
        if entry is None:
            continue
        for slot, weight in ((rule.champion, entry.champion), (rule.challenger, entry.challenger)):
            ops += unset_slot(slot) if weight is None else set_slot(slot, weight)
    return ops


def int_weight(value: Any) -> int | None:
    """A weight as the resource holds it; None when unset (or not an integer)."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def relative_weight_ops(observed: Observed, weights: ArmWeights) -> JsonPatch:
    """For providers whose weights are relative (any sum): both arms' weights as given,
    in every rule that holds them."""
    if weights.champion + weights.challenger <= 0:
        raise RoutingError("both arms at weight 0 would leave the route with no traffic")
    ops: JsonPatch = []
    for rule in observed.rules:
        ops += set_slot(rule.champion, weights.champion)
        ops += set_slot(rule.challenger, weights.challenger)
    return ops


def percent_weight_ops(observed: Observed, weights: ArmWeights, *, where: str) -> JsonPatch:
    """For providers whose weights are percentages that must sum to 100 (Istio, Knative):
    the two arms share what they held between them in the ``where`` (route, traffic
    block), split as ``weights`` says, so whatever else is there keeps its part."""
    total = weights.champion + weights.challenger
    if total <= 0:
        raise RoutingError(f"both arms at weight 0 would leave the {where} with no traffic")
    ops: JsonPatch = []
    for rule in observed.rules:
        if rule.champion.effective + rule.challenger.effective <= 0:
            raise RoutingError(
                f"{where} {rule.rule}: the two arms hold no share of the traffic to divide "
                "(their weights are 0); give them their share first"
            )
        champion, challenger = rule.split(weights)
        ops += set_slot(rule.champion, champion)
        ops += set_slot(rule.challenger, challenger)
    return ops


def observation(
    obj: Mapping[str, Any],
    rules: Sequence[RuleSlots],
    missing: tuple[str, ...],
    *,
    accepted: bool = True,
    waiting: str = "",
    openings: Sequence[Opening] = (),
) -> Observed:
    """An object found, with its rules and what our records need from its metadata."""
    metadata = obj.get("metadata") or {}
    return Observed(
        found=True,
        rules=tuple(rules),
        missing=missing,
        accepted=accepted,
        waiting=waiting,
        openings=tuple(openings),
        annotations=dict(metadata.get("annotations") or {}),
        managed_fields=list(metadata.get("managedFields") or []),
        resource_version=metadata.get("resourceVersion"),
    )


def ready_at_generation(obj: Mapping[str, Any], *, what: str) -> tuple[bool, str]:
    """Whether the controller of ``obj`` (Knative, KServe) reports ``Ready`` at its current
    generation, and what to wait for if not. An object nobody reports on yet counts as
    ready: there is nothing to wait for."""
    generation = (obj.get("metadata") or {}).get("generation")
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None:
        return True, ""
    seen = status.get("observedGeneration")
    if isinstance(generation, int) and isinstance(seen, int) and seen < generation:
        return False, f"{what} has been reconciled at generation {seen}, not {generation} yet"
    if ready.get("status") != "True":
        return False, f"{what} is not Ready: {ready.get('message', '')}"
    return True, ""


def insertion_ops(observed: Observed) -> JsonPatch:
    """Deploy mode: add the challenger's entry beside the champion wherever it is alone."""
    ops: JsonPatch = []
    for opening in observed.openings:
        ops += [
            {"op": "test", "path": opening.anchor[0], "value": opening.anchor[1]},
            *opening.also,
            {"op": "add", "path": f"{opening.list_path}/-", "value": dict(opening.entry)},
        ]
    return ops


def removal_ops(observed: Observed, *, champion: bool) -> JsonPatch:
    """Deploy mode: remove one arm's entry from every rule that holds both (the version
    that left the test is scaled down and deleted: no route may keep pointing at it).
    An entry's weight is its last path segment, so the entry is the weight's parent."""
    ops: JsonPatch = []
    for rule in observed.rules:
        slot = rule.champion if champion else rule.challenger
        ops += [
            {"op": "test", "path": slot.anchor[0], "value": slot.anchor[1]},
            {"op": "remove", "path": slot.path.rsplit("/", 1)[0]},
        ]
    return ops


def entry_slot(
    list_path: str,
    index: int,
    entries: Sequence[Mapping[str, Any]],
    *,
    key: str,
    weight_key: str = "weight",
    default: int,
) -> Slot:
    """The slot of entry ``index`` in the list at ``list_path``: its ``weight_key``,
    anchored on its ``key`` (the backend's name, revision or destination) as read."""
    base = f"{list_path}/{index}"
    return Slot(
        path=f"{base}/{weight_key}",
        anchor=(f"{base}/{key}", entries[index].get(key)),
        weight=int_weight(entries[index].get(weight_key)),
        default=default,
    )


def opening_for(
    *,
    list_path: str,
    index: int,
    entries: Sequence[Mapping[str, Any]],
    anchor_key: str,
    entry: Mapping[str, Any],
    also: Sequence[dict[str, Any]] = (),
    rule: int = 0,
    weight_key: str = "weight",
) -> Opening:
    """The :class:`Opening` after entry ``index`` (the champion's, in rule ``rule``) of the
    list at ``list_path``."""
    champion = int_weight(entries[index].get(weight_key))
    return Opening(
        list_path=list_path,
        anchor=(f"{list_path}/{index}/{anchor_key}", entries[index].get(anchor_key)),
        entry=entry,
        also=tuple(also),
        original=RuleWeights(rule=rule, champion=champion, challenger=0),
    )


class SlotRouter:
    """What every router whose arms are slots shares: the exact restore, and promotion
    as all traffic to the challenger. A provider adds ``resource``, ``observe`` and
    ``patch_weights``."""

    def patch_weights(self, observed: Observed, weights: ArmWeights) -> JsonPatch:
        raise NotImplementedError

    def restore(self, observed: Observed, original: Sequence[RuleWeights]) -> JsonPatch:
        return restore_ops(observed, original)

    def promote(self, observed: Observed) -> JsonPatch:
        return self.patch_weights(observed, ArmWeights(champion=0, challenger=100))


def single_rule(
    found: Mapping[str, int], arms: Arms, slot: Callable[[int], Slot], *, shared: bool = False
) -> list[RuleSlots]:
    """For providers with one list of backends (SMI, Knative): the one rule, when both
    arms are in it; ``found`` maps a backend's name to its index, ``slot`` makes the slot
    of an index."""
    if arms.champion not in found or arms.challenger not in found:
        return []
    return [
        RuleSlots(rule=0, champion=slot(found[arms.champion]),
                  challenger=slot(found[arms.challenger]), shared=shared)
    ]  # fmt: skip
