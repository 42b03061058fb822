"""The ABTest lifecycle as one pure function: (spec, status, what was observed, the
statistics, now) → a :class:`Plan` (the new status, one JSON patch for the serving
resource, ModelVersion stages, Events). The handler reads, calls :func:`plan`, applies
the patch, then the stages, then writes the status once.

Restart safety rests on one rule: every write to the serving resource carries our record
(:data:`~afs.continuous.kube.routing.RECORD_ANNOTATION`: step, weights, when, the original
weights, and at the end the phase and verdict) in the same patch. If the operator dies
after the patch and before the status write, the next reconcile finds a record ahead of
the status and adopts it instead of applying the step again or calling its own write
drift; a verdict acted on is never lost, because the record says it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from afs.continuous.core.decision import (
    DecisionSettings,
    Epoch,
    EpochWindow,
    Verdict,
    VerdictKind,
    judge,
)
from afs.continuous.kube import planning
from afs.continuous.kube.api.v1alpha1 import (
    ABTestPhase,
    ABTestSpec,
    ABTestStatus,
    ArmWeights,
    EpochStatus,
    RuleWeights,
    Stage,
)
from afs.continuous.kube.routing import (
    FIELD_MANAGER,
    SERVICE_ROUTED,
    JsonPatch,
    Observed,
    TrafficRouter,
    insertion_ops,
    record_ops,
    removal_ops,
)
from afs.continuous.timeutil import format_timestamp, parse_timestamp

ACTION_ANNOTATION = "continuous.afs.dev/action"
ACTIONS = ("promote", "abort")
ROUTE_FIELDS = "f:spec"  # managedFields key under which a writer of the weights shows

Event = tuple[str, str, str]  # (type, reason, message)

_FINAL = {
    VerdictKind.PROMOTE: ABTestPhase.PROMOTED,
    VerdictKind.ROLLBACK: ABTestPhase.ROLLED_BACK,
    VerdictKind.HALT: ABTestPhase.HALTED,
    VerdictKind.INCONCLUSIVE: ABTestPhase.INCONCLUSIVE,
}


@dataclass(frozen=True)
class Identity:
    namespace: str
    name: str
    uid: str | None
    generation: int | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def wrote(self, record: Mapping[str, Any] | None) -> bool:
        """Whether a record on the serving resource is this test's (by uid when both
        have one: a test deleted and created again under its name is another test)."""
        if record is None:
            return False
        if self.uid is not None and record.get("uid") is not None:
            return bool(record.get("uid") == self.uid)
        return bool(record.get("test") == self.key)


@dataclass(frozen=True)
class Observation:
    """What the handler read: the serving resource, the ModelVersions the spec names that
    do not exist, the action annotation, and the statistics of each counted epoch (see
    :func:`epoch_windows`)."""

    route: Observed
    missing_versions: tuple[str, ...] = ()
    stages: Mapping[str, str | None] = field(default_factory=dict)
    """The ModelVersions' stages as read (by name)."""
    action: str | None = None
    epochs: Sequence[Epoch] = ()
    unavailable: tuple[str, ...] = ()
    """Deploy mode: the arms whose Deployment is not Available yet (the first step waits)."""
    deployed: frozenset[str] = frozenset()
    """Deploy mode: the arms' ModelVersions the operator runs (``spec.serving``)."""
    database_checked: bool = False
    """Whether the usage database was asked this time (a statistics query was made)."""
    database_problem: str | None = None
    """Why the arms' records cannot be read (None: they can, or nobody asked)."""


@dataclass
class Plan:
    status: ABTestStatus
    patch: JsonPatch = field(default_factory=list)
    stages: dict[str, Stage] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    consume_action: bool = False
    verdict: Verdict | None = None
    """The judgement made this time, if any."""
    ended: bool = False
    """The test reached its final phase this time."""


def decision_settings(spec: ABTestSpec) -> DecisionSettings:
    """The judge's settings; the first step's weight is the planned split."""
    d = spec.decision
    share = spec.steps[0].weight / 100
    return DecisionSettings(
        alpha=d.alpha,
        min_effect=d.min_effect,
        latency_margin=d.latency_margin,
        error_rate_margin=d.error_rate_margin,
        negative_feedback_margin=d.negative_feedback_margin,
        error_ratio=d.error_ratio,
        unit=d.unit,
        min_units=d.min_units_per_arm,
        min_requests=d.min_requests_per_arm,
        min_feedback=d.min_feedback_per_arm,
        max_duration_hours=d.max_duration_hours,
        min_duration_hours=d.min_duration_hours,
        planned_challenger_share=min(max(share, 0.01), 0.99),
    )


def epoch_windows(status: ABTestStatus, now: datetime) -> list[EpochWindow]:
    """The time windows whose records count: from when the resource accepted an epoch's
    weights to when the next weights were written (in between, the split is unknown)."""
    windows = []
    for index, epoch in enumerate(status.epochs):
        if epoch.start is None:
            continue
        end = (
            parse_timestamp(status.epochs[index + 1].applied)
            if index + 1 < len(status.epochs)
            else now
        )
        total = epoch.weights.champion + epoch.weights.challenger
        share = epoch.weights.challenger / total if total else 0.0
        start = parse_timestamp(epoch.start)
        hours = max((end - start).total_seconds() / 3600, 0.0)
        windows.append(EpochWindow(start=start, end=end, hours=hours, challenger_share=share))
    return windows


def analysis_due(status: ABTestStatus, interval: timedelta, now: datetime) -> bool:
    """Judged at most once per ``interval`` (the statistics cost two queries per epoch)."""
    last = status.last_analysis_time
    return last is None or now >= parse_timestamp(last) + interval


def spec_problem(spec: ABTestSpec, missing_versions: Sequence[str]) -> str | None:
    """What pydantic cannot see: one line naming the field, or None."""
    if spec.champion.model_version == spec.challenger.model_version:
        return "challenger.modelVersion: the champion and the challenger are the same version"
    if spec.champion.backend == spec.challenger.backend:
        return "challenger.servingName: both arms route to the same backend"
    weights = [step.weight for step in spec.steps]
    for index in range(1, len(weights)):
        if weights[index] <= weights[index - 1]:
            before, after = weights[index - 1], weights[index]
            return f"steps.{index}.weight: steps must increase ({before} → {after})"
    if missing_versions:
        return "; ".join(missing_versions)
    return None


def plan(
    *,
    spec: ABTestSpec,
    status: ABTestStatus,
    router: TrafficRouter,
    observation: Observation,
    identity: Identity,
    analysis_interval: timedelta,
    now: datetime,
) -> Plan:
    """The next step of one ABTest (see the module docstring)."""
    return _Planner(spec, status, router, observation, identity, analysis_interval, now).run()


@dataclass
class _Planner:
    spec: ABTestSpec
    status: ABTestStatus
    router: TrafficRouter
    observed: Observation
    identity: Identity
    analysis_interval: timedelta
    now: datetime

    def __post_init__(self) -> None:
        self.out = Plan(status=self.status.model_copy(deep=True))
        self.out.status.observed_generation = self.identity.generation

    # --- helpers ------------------------------------------------------------------------

    @property
    def s(self) -> ABTestStatus:
        return self.out.status

    @property
    def route(self) -> Observed:
        return self.observed.route

    def condition(self, type_: str, ok: bool, reason: str, message: str) -> None:
        self.s.conditions = planning.set_condition(
            self.s.conditions, type=type_, status=ok, reason=reason, message=message,
            now=self.now, generation=self.identity.generation,
        )  # fmt: skip

    def event(self, kind: str, reason: str, message: str) -> None:
        self.out.events.append((kind, reason, message))

    def waiting(self, reason: str, message: str) -> Plan:
        """Ready=False for something outside the test; nothing is written. The Event is
        posted when the reason is new, not at every reconcile while it lasts."""
        if self.status_condition_reason("Ready") != reason:
            self.event("Warning", reason, message)
        self.condition("Ready", False, reason, message)
        return self.out

    def ours(self, record: Mapping[str, Any] | None) -> bool:
        return self.identity.wrote(record)

    def record(self, *, phase: ABTestPhase, weights: ArmWeights | None) -> dict[str, Any]:
        original = self.s.original or []
        value: dict[str, Any] = {
            "test": self.identity.key, "uid": self.identity.uid, "phase": phase.value,
            "step": self.s.step, "applied": format_timestamp(self.now),
            "weights": weights.model_dump() if weights else None,
            "original": [o.model_dump() for o in original],
        }  # fmt: skip
        if phase.finished:
            value["verdict"] = self.s.verdict
        return value

    def write(self, ops: JsonPatch, *, phase: ABTestPhase, weights: ArmWeights | None) -> None:
        self.out.patch = [*ops, *record_ops(self.route, self.record(phase=phase, weights=weights))]

    def stage(self, version: str, stage: Stage) -> None:
        if self.observed.stages.get(version) != stage.value:
            self.out.stages[version] = stage

    def running_stages(self) -> None:
        """Kept while the test runs, not only set at its start: a ModelVersion recorded
        at the same moment may have written its first stage over ours."""
        self.stage(self.spec.champion.model_version, Stage.CHAMPION)
        self.stage(self.spec.challenger.model_version, Stage.CHALLENGER)

    # --- the lifecycle ------------------------------------------------------------------

    def run(self) -> Plan:
        phase = self.s.phase
        if phase is not None and phase.finished:
            return self.finished_already()
        problem = spec_problem(self.spec, self.observed.missing_versions)
        if problem is not None:
            self.s.phase = self.s.phase or ABTestPhase.PENDING
            return self.waiting("InvalidSpec", problem)
        action = self.observed.action
        if action is not None and action not in ACTIONS:
            self.out.consume_action = True
            self.event(
                "Warning", "UnknownAction",
                f"{ACTION_ANNOTATION}={action!r} ignored (use one of: {', '.join(ACTIONS)})",
            )  # fmt: skip
            action = None
        if action == "abort":
            return self.abort()
        if phase in (None, ABTestPhase.PENDING) and self.observed.unavailable:
            return self.waiting("NotAvailable", "; ".join(self.observed.unavailable))
        problem = self.observed.database_problem
        if problem is not None and phase in (None, ABTestPhase.PENDING):
            # no user reaches the challenger while no guardrail could watch it
            self.s.phase = ABTestPhase.PENDING
            return self.waiting(
                "DatabaseUnavailable", f"{problem}; no traffic moves until its records can be read"
            )
        if problem is not None:
            return self.database_lost(problem)
        if self.observed.database_checked and self.s.database_unavailable_since is not None:
            self.database_back()
        if not self.route.found:
            target = self.spec.traffic.target_ref
            return self.waiting(
                "TargetNotFound", f"{target.kind} {self.identity.namespace}/{target.name} not found"
            )
        if self.route.unsupported:
            target = self.spec.traffic.target_ref
            return self.waiting(
                "UnsupportedTarget", f"{target.kind} {target.name}: {self.route.unsupported}"
            )
        if self.route.missing and not self.inserts_challenger():
            target = self.spec.traffic.target_ref
            return self.waiting(
                "BackendNotFound",
                f"{target.kind} {target.name} has no rule with both backends; missing: "
                + ", ".join(self.route.missing),
            )
        record = self.route.record
        if record is not None and not self.ours(record) and record.get("phase") in (
            ABTestPhase.RUNNING.value, ABTestPhase.WAITING_PROMOTION.value
        ):  # fmt: skip
            return self.waiting(
                "TargetInUse",
                f"{self.spec.traffic.target_ref.name} is under test by {record.get('test')}",
            )
        if self.route.missing:
            return self.insert_challenger()
        if self.ours(record) and self.adopt(record or {}):
            return self.out
        if phase in (None, ABTestPhase.PENDING):
            return self.start()
        return self.follow(action)

    def database_lost(self, problem: str) -> Plan:
        """A running test that cannot read its records holds its step (nothing is judged,
        no step is taken); after ``decision.unreachableTimeout``, if set, it gives the
        traffic back to the champion."""
        since = self.s.database_unavailable_since or format_timestamp(self.now)
        self.s.database_unavailable_since = since
        timeout = self.spec.decision.unreachable_timeout
        if timeout is not None:
            due = parse_timestamp(since) + planning.parse_duration(timeout)
            if self.now >= due:
                self.s.reason = (
                    f"the usage database was unreachable for {timeout} "
                    f"(decision.unreachableTimeout): {problem}"
                )
                return self.finish(VerdictKind.ROLLBACK, prefix="back to the champion: ")
            then = f"; the champion gets all traffic back at {format_timestamp(due)}"
        else:
            then = " (set decision.unreachableTimeout to give the champion the traffic back)"
        self.condition("Progressing", False, "DatabaseUnavailable", f"holding step "
                       f"{self.s.step + 1}: {problem}")  # fmt: skip
        return self.waiting(
            "DatabaseUnavailable", f"{problem}; holding step {self.s.step + 1} since {since}{then}"
        )

    def database_back(self) -> None:
        since = self.s.database_unavailable_since
        self.s.database_unavailable_since = None
        message = f"the usage database is readable again (unreachable since {since}); resumed"
        self.event("Normal", "DatabaseAvailable", message)
        self.condition("Ready", True, "Running", message)
        self.condition("Progressing", True, "Resumed", message)

    def finished_already(self) -> Plan:
        if self.observed.action is not None:
            self.out.consume_action = True
            self.event(
                "Normal", "ActionIgnored",
                f"{ACTION_ANNOTATION}={self.observed.action} ignored: the test has ended "
                f"({self.s.phase})",
            )  # fmt: skip
        return self.out

    def adopt(self, record: Mapping[str, Any]) -> bool:
        """Catch the status up with a write it did not record (the operator died between
        the patch and the status write); True when it did."""
        try:
            step = int(record["step"])
            applied = str(record["applied"])
            phase = ABTestPhase(record["phase"])
            weights = ArmWeights.model_validate(record["weights"]) if record["weights"] else None
            original = [RuleWeights.model_validate(o) for o in record.get("original") or []]
        except (KeyError, TypeError, ValueError):
            return False
        if phase.finished:
            if self.s.phase == phase:
                return False
            self.s.phase, self.s.finished = phase, applied
            self.s.verdict = record.get("verdict") or self.s.verdict
            self.s.reason = self.s.reason or f"recorded on the target when the test ended ({phase})"
            self.s.weights = weights or self.s.weights
            self.end_stages(phase)
            self.condition("Progressing", False, phase.value, self.s.reason)
            self.condition("Ready", True, phase.value, self.s.reason)
            self.out.ended = True
            return True
        started = self.s.phase not in (None, ABTestPhase.PENDING)
        if weights is None or (started and (step, weights) == (self.s.step, self.s.weights)):
            return False  # the status has it (a drift written back changes neither)
        self.s.original = self.s.original or original
        self.s.step, self.s.weights = step, weights
        self.s.epochs = [*self.s.epochs, EpochStatus(step=step, weights=weights, applied=applied)]
        self.s.started = self.s.started or applied
        if self.s.phase in (None, ABTestPhase.PENDING):
            self.s.phase = ABTestPhase.RUNNING
        self.condition("Ready", True, "Adopted", f"step {step} found applied on the target")
        return True

    def deploys(self, version: str) -> bool:
        """Whether the operator stands ``version`` up (deploy mode on a Service-routed
        provider, or a Knative revision it creates) and so owns its entries in the route."""
        if self.spec.traffic.create_revision:
            return version == self.spec.challenger.model_version
        return version in self.observed.deployed and (self.spec.traffic.provider in SERVICE_ROUTED)

    def inserts_challenger(self) -> bool:
        """Deploy mode, before the start: the challenger's Service is new to the route and
        goes in beside the champion (at weight 0) before the first step."""
        return (
            self.s.phase in (None, ABTestPhase.PENDING)
            and self.deploys(self.spec.challenger.model_version)
            and self.route.missing == (self.spec.challenger.backend,)
            and bool(self.route.openings)
        )

    def insert_challenger(self) -> Plan:
        backend = self.spec.challenger.backend
        self.s.phase = ABTestPhase.PENDING
        # the weights before the insertion (which may have had to add one): the original
        self.s.original = [o.original for o in self.route.openings if o.original is not None]
        self.write(insertion_ops(self.route), phase=ABTestPhase.PENDING, weights=None)
        message = f"{backend} added beside the champion at weight 0 (deploy mode)"
        self.event("Normal", "BackendAdded", message)
        self.condition("Progressing", True, "BackendAdded", message)
        return self.out

    def leaving(self, *, promoted: bool) -> JsonPatch:
        """Deploy mode: the entries of the version that leaves (the old champion after a
        promotion, else the challenger), whose Deployment is wound down."""
        arm = self.spec.champion if promoted else self.spec.challenger
        return removal_ops(self.route, champion=promoted) if self.deploys(arm.model_version) else []

    def start(self) -> Plan:
        inserted = {o.rule: o for o in self.s.original or []}  # recorded at the insertion
        self.s.original = [inserted.get(o.rule, o) for o in self.route.original()]
        self.s.started = format_timestamp(self.now)
        self.running_stages()
        return self.apply_step(0, "started")

    def apply_step(self, step: int, why: str) -> Plan:
        weight = self.spec.steps[step].weight
        weights = ArmWeights(champion=100 - weight, challenger=weight)
        self.s.phase = ABTestPhase.RUNNING
        self.s.step, self.s.weights = step, weights
        self.write(self.router.patch_weights(self.route, weights), phase=ABTestPhase.RUNNING,
                   weights=weights)  # fmt: skip
        applied = format_timestamp(self.now)
        self.s.epochs = [*self.s.epochs, EpochStatus(step=step, weights=weights, applied=applied)]
        message = (
            f"step {step + 1}/{len(self.spec.steps)} ({why}): challenger {weights.challenger}%, "
            f"champion {weights.champion}%"
        )
        self.event("Normal", "StepApplied", message)
        self.condition("Ready", True, "Running", message)
        self.condition("Progressing", True, "StepApplied", message)
        return self.accept()

    def accept(self) -> Plan:
        """Start the last epoch once the resource has accepted its weights."""
        last = self.s.epochs[-1]
        if last.start is None:
            if not self.route.accepted or self.out.patch:  # a write just now: accepted next time
                if not self.out.patch:
                    self.condition("Progressing", True, "WaitingForAcceptance", self.route.waiting)
                return self.out
            last.start = format_timestamp(self.now)
        return self.out

    def follow(self, action: str | None) -> Plan:
        assert self.s.weights is not None
        self.running_stages()
        live = self.route.weights
        if not self.route.holds(self.s.weights):
            return self.drifted(live)
        if self.status_condition_reason("Progressing") == "WeightsDrifted":  # was paused
            # the weights are ours again; what ran meanwhile was off plan: a new epoch
            self.s.epochs = [
                *self.s.epochs,
                EpochStatus(step=self.s.step, weights=self.s.weights,
                            applied=format_timestamp(self.now)),
            ]  # fmt: skip
            message = "the weights are this test's again; resumed with a new epoch"
            self.event("Normal", "Resumed", message)
            self.condition("Progressing", True, "Resumed", message)
        self.accept()
        if self.s.epochs[-1].start is None:
            return self.out
        if self.s.phase == ABTestPhase.WAITING_PROMOTION and self.approved(action):
            return self.promote_or_wait(action)  # on the evidence that made it wait
        if not analysis_due(self.status, self.analysis_interval, self.now):
            return self.out
        verdict = judge(self.observed.epochs, decision_settings(self.spec),
                        elapsed_hours=self.elapsed_hours())  # fmt: skip
        self.out.verdict = verdict
        self.s.last_analysis_time = format_timestamp(self.now)
        self.s.evidence = verdict.metrics
        self.s.reason = "; ".join(verdict.reasons)
        kind = verdict.kind
        waiting = self.s.phase == ABTestPhase.WAITING_PROMOTION
        if kind in (VerdictKind.ROLLBACK, VerdictKind.HALT):
            return self.finish(kind)
        if kind == VerdictKind.PROMOTE or waiting:
            return self.promote_or_wait(action)
        if kind == VerdictKind.INCONCLUSIVE:
            return self.finish(kind, prefix="not enough evidence: ")
        self.s.verdict = kind.value
        self.condition("Progressing", True, "Analysing", self.s.reason)
        return self.next_step()

    def elapsed_hours(self) -> float:
        starts = [e.start for e in self.s.epochs if e.start is not None]
        if not starts:
            return 0.0
        return max((self.now - parse_timestamp(starts[0])).total_seconds() / 3600, 0.0)

    def next_step(self) -> Plan:
        step = self.s.step
        if step + 1 >= len(self.spec.steps):
            return self.out
        current = self.s.epochs[-1]
        pause = self.spec.steps[step].pause
        start = current.start
        if start is None:
            return self.out
        if pause is not None and self.now < parse_timestamp(start) + planning.parse_duration(pause):
            return self.out
        return self.apply_step(step + 1, f"after step {step + 1}")

    def drifted(self, live: Sequence[ArmWeights]) -> Plan:
        assert self.s.weights is not None
        who = self.route.last_writer(ROUTE_FIELDS, other_than=FIELD_MANAGER)
        seen = ", ".join(f"{w.champion}/{w.challenger}" for w in live)
        message = (
            f"weights changed to {seen} (champion/challenger) by {who or 'another writer'}; "
            f"this test set {self.s.weights.champion}/{self.s.weights.challenger}"
        )
        if self.spec.traffic.on_drift == "pause":
            self.condition("Progressing", False, "WeightsDrifted", f"paused: {message}")
            if self.status_condition_reason("Progressing") != "WeightsDrifted":
                self.event("Warning", "WeightsDrifted", f"{message}; paused (onDrift: pause)")
            return self.out
        weights = self.s.weights
        self.write(self.router.patch_weights(self.route, weights), phase=ABTestPhase.RUNNING,
                   weights=weights)  # fmt: skip
        # the split was off plan since the change: the weights written back start an epoch
        self.s.epochs = [
            *self.s.epochs,
            EpochStatus(step=self.s.step, weights=weights, applied=format_timestamp(self.now)),
        ]
        self.event("Warning", "WeightsDrifted", f"{message}; written back (onDrift: reassert)")
        self.condition("Progressing", True, "WeightsReasserted", message)
        return self.out

    def status_condition_reason(self, type_: str) -> str | None:
        return next((c.reason for c in self.status.conditions if c.type == type_), None)

    def approved(self, action: str | None) -> bool:
        return action == "promote" or (
            self.spec.approved_challenger == self.spec.challenger.model_version
        )

    def promote_or_wait(self, action: str | None) -> Plan:
        if self.spec.promotion == "auto" or self.approved(action):
            if action == "promote":
                self.out.consume_action = True
            how = "approved" if self.spec.promotion == "manual" else "automatic"
            return self.finish(VerdictKind.PROMOTE, prefix=f"promoted ({how}): ")
        if self.s.phase != ABTestPhase.WAITING_PROMOTION:
            self.event(
                "Normal", "WaitingPromotion",
                f"{self.spec.challenger.model_version} proven better; approve with the "
                f"annotation {ACTION_ANNOTATION}=promote or spec.approvedChallenger",
            )  # fmt: skip
        self.s.phase = ABTestPhase.WAITING_PROMOTION
        self.s.verdict = VerdictKind.PROMOTE.value
        self.condition("Progressing", True, "WaitingPromotion", self.s.reason)
        return self.out

    def finish(self, kind: VerdictKind, *, prefix: str = "") -> Plan:
        phase = _FINAL[kind]
        self.s.phase = phase
        self.s.verdict = kind.value
        self.s.reason = prefix + self.s.reason
        self.s.finished = format_timestamp(self.now)
        if self.route.found and not self.route.missing:
            if phase == ABTestPhase.PROMOTED:
                self.s.weights = ArmWeights(champion=0, challenger=100)
                ops = [*self.router.promote(self.route), *self.leaving(promoted=True)]
                self.write(ops, phase=phase, weights=self.s.weights)
            else:
                ops = [
                    *self.router.restore(self.route, self.s.original or []),
                    *self.leaving(promoted=False),
                ]
                self.write(ops, phase=phase, weights=None)
                self.event("Normal", "WeightsRestored", _describe_original(self.s.original))
        self.end_stages(phase)
        self.out.ended = True
        kind_of_event = "Normal" if phase == ABTestPhase.PROMOTED else "Warning"
        self.event(kind_of_event, phase.value, self.s.reason)
        self.condition("Progressing", False, phase.value, self.s.reason)
        self.condition("Ready", True, phase.value, self.s.reason)
        return self.out

    def end_stages(self, phase: ABTestPhase) -> None:
        if phase == ABTestPhase.PROMOTED:
            self.stage(self.spec.challenger.model_version, Stage.CHAMPION)
            self.stage(self.spec.champion.model_version, Stage.RETIRED)
        else:
            self.stage(self.spec.challenger.model_version, Stage.REJECTED)

    def abort(self) -> Plan:
        self.out.consume_action = True
        self.s.reason = f"aborted by the annotation {ACTION_ANNOTATION}=abort"
        record = self.route.record
        wrote = self.s.weights is not None or self.ours(record)
        if wrote and self.s.original is None and self.ours(record):
            self.s.original = [
                RuleWeights.model_validate(o) for o in (record or {}).get("original") or []
            ]
        self.s.phase = ABTestPhase.ROLLED_BACK
        self.s.verdict = "ABORTED"
        self.s.finished = format_timestamp(self.now)
        if wrote and self.route.found and not self.route.missing:
            ops = [
                *self.router.restore(self.route, self.s.original or []),
                *self.leaving(promoted=False),
            ]
            self.write(ops, phase=ABTestPhase.ROLLED_BACK, weights=None)
            self.event("Normal", "WeightsRestored", _describe_original(self.s.original))
        self.end_stages(ABTestPhase.ROLLED_BACK)
        self.out.ended = True
        self.event("Warning", "Aborted", self.s.reason)
        self.condition("Progressing", False, "Aborted", self.s.reason)
        self.condition("Ready", True, "Aborted", self.s.reason)
        return self.out


def restore_on_delete(
    *, status: ABTestStatus, router: TrafficRouter, route: Observed, identity: Identity,
    now: datetime, remove_challenger: bool = False,
) -> JsonPatch:  # fmt: skip
    """The patch that puts back the original weights when a test that wrote them is
    deleted before it ended (nothing when it ended, or never wrote); in deploy mode the
    challenger's entries go too (``remove_challenger``), also when the test had only put
    them in and not started."""
    record = route.record
    if not route.found or not identity.wrote(record):
        return []
    phase = str((record or {}).get("phase"))
    if phase == ABTestPhase.PENDING.value and remove_challenger:
        final = dict(record or {}, phase="Deleted", applied=format_timestamp(now))
        return [*removal_ops(route, champion=False), *record_ops(route, final)]
    if phase not in (ABTestPhase.RUNNING.value, ABTestPhase.WAITING_PROMOTION.value):
        return []
    original = status.original
    if original is None:
        original = [RuleWeights.model_validate(o) for o in (record or {}).get("original") or []]
    final = dict(record or {}, phase="Deleted", weights=None, applied=format_timestamp(now))
    leaving = removal_ops(route, champion=False) if remove_challenger else []
    return [*router.restore(route, original), *leaving, *record_ops(route, final)]


def _describe_original(original: Sequence[RuleWeights] | None) -> str:
    parts = [
        f"rule {o.rule}: champion {_unset(o.champion)}, challenger {_unset(o.challenger)}"
        for o in original or []
    ]
    return "original weights restored: " + ("; ".join(parts) or "none recorded")


def _unset(weight: int | None) -> str:
    return "unset" if weight is None else str(weight)
