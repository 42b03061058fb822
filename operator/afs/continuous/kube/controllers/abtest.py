"""The ABTest controller's shell: read the serving resource, the ModelVersions and the
arms' statistics; let :func:`afs.continuous.kube.rollout.plan` decide; apply its patch to
the serving resource, then the ModelVersion stages; hand the status back to the handler,
which writes it once. Nothing is decided here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from afs.continuous.core.decision import Epoch
from afs.continuous.epoch_statistics import measure_epochs
from afs.continuous.kube import planning, promotion, rollout
from afs.continuous.kube.api.v1alpha1 import (
    ABTestPhase,
    ABTestSpec,
    ABTestStatus,
    DatabaseSpec,
    LearningLoopSpec,
)
from afs.continuous.kube.client import KubeApiError, KubeClient, PatchConflictError
from afs.continuous.kube.controllers.shared import (
    DatabaseUnavailableError,
    EventSink,
    OperatorConfig,
    StorePool,
    database_failure,
    database_url,
)
from afs.continuous.kube.metrics import OperatorMetrics
from afs.continuous.kube.routing import (
    SERVICE_ROUTED,
    Arms,
    JsonPatch,
    Observed,
    RoutingError,
    TrafficRouter,
    router_for,
)
from afs.continuous.store.base import UsageStore
from afs.continuous.timeutil import Clock, parse_timestamp, utc_now

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    status: ABTestStatus
    consume_action: bool = False


@dataclass
class ABTestReconciler:
    kube: KubeClient
    config: OperatorConfig
    stores: StorePool
    clock: Clock = utc_now
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)

    def reconcile(
        self,
        *,
        name: str,
        namespace: str,
        uid: str | None,
        generation: int | None,
        spec: dict[str, Any],
        status: dict[str, Any],
        annotations: dict[str, str],
        owners: list[dict[str, Any]],
        event: EventSink,
    ) -> Outcome:
        now = self.clock()
        identity = rollout.Identity(namespace, name, uid, generation)
        current = ABTestStatus.from_status(status)
        current.observed_generation = generation
        try:
            parsed = ABTestSpec.model_validate(spec)
            router = router_for(parsed.traffic)
        except (ValidationError, RoutingError) as exc:
            message = (
                promotion.validation_message(exc) if isinstance(exc, ValidationError) else str(exc)
            )
            self._invalid(current, message=message, generation=generation, event=event)
            return Outcome(current)
        action = annotations.get(rollout.ACTION_ANNOTATION)
        try:
            if current.phase is not None and current.phase.finished:
                observation = rollout.Observation(route=Observed(found=False), action=action)
            else:
                observation = self._observe(
                    parsed=parsed, router=router, current=current, namespace=namespace,
                    owners=owners, action=action, now=now,
                )  # fmt: skip
            plan = rollout.plan(
                spec=parsed, status=current, router=router, observation=observation,
                identity=identity, analysis_interval=self._analysis_interval(parsed), now=now,
            )  # fmt: skip
            if plan.patch:
                self._patch_target(parsed, router, namespace, plan.patch)
            for version, stage in plan.stages.items():
                self.kube.patch_custom_status(
                    "modelversions", namespace, version, {"stage": stage.value}
                )
        except PatchConflictError as exc:  # someone wrote in between: read again next time
            current.conditions = planning.set_condition(
                current.conditions, type="Progressing", status=True, reason="Conflict",
                message=f"the target changed while it was written; retrying: {exc}", now=now,
                generation=generation,
            )  # fmt: skip
            return Outcome(current)
        except KubeApiError as exc:
            return Outcome(self._not_ready(current, "KubernetesApiError", str(exc), event=event))
        for kind, reason, message in plan.events:
            event(kind, reason, message)
        self._observe_metrics(namespace=namespace, name=name, plan=plan)
        return Outcome(plan.status, plan.consume_action)

    def finalize(
        self, *, name: str, namespace: str, uid: str | None, spec: dict[str, Any],
        status: dict[str, Any], event: EventSink,
    ) -> None:  # fmt: skip
        """A test deleted while it held the traffic gives it back (its original weights)."""
        self.metrics.forget_abtest(namespace, name)
        try:
            parsed = ABTestSpec.model_validate(spec)
            router = router_for(parsed.traffic)
        except (ValidationError, RoutingError):
            return  # it never wrote anything
        current = ABTestStatus.from_status(status)
        versions = self._versions(parsed, namespace)
        route = self._route(parsed, router, namespace, versions=versions)
        identity = rollout.Identity(namespace, name, uid, None)
        challenger = versions[parsed.challenger.model_version]
        patch = rollout.restore_on_delete(
            status=current, router=router, route=route, identity=identity, now=self.clock(),
            remove_challenger=parsed.traffic.create_revision
            or (_deployed(challenger) and parsed.traffic.provider in SERVICE_ROUTED),
        )  # fmt: skip
        if patch:
            self._patch_target(parsed, router, namespace, patch)
            event("Normal", "WeightsRestored", "test deleted while running: original weights back")

    # --- reading ------------------------------------------------------------------------

    def _observe(
        self,
        *,
        parsed: ABTestSpec,
        router: TrafficRouter,
        current: ABTestStatus,
        namespace: str,
        owners: list[dict[str, Any]],
        action: str | None,
        now: datetime,
    ) -> rollout.Observation:
        arms = (("champion", parsed.champion), ("challenger", parsed.challenger))
        versions = self._versions(parsed, namespace)
        missing = tuple(
            f"{arm}.modelVersion: ModelVersion {namespace}/{ref.model_version} not found"
            for arm, ref in arms
            if versions[ref.model_version] is None
        )
        stages = {
            name: ((version or {}).get("status") or {}).get("stage")
            for name, version in versions.items()
        }
        route = self._route(parsed, router, namespace, versions=versions)
        epochs: list[Epoch] = []
        pending = current.phase in (None, ABTestPhase.PENDING)
        judging = current.phase in (ABTestPhase.RUNNING, ABTestPhase.WAITING_PROMOTION)
        due = judging and route.found and rollout.analysis_due(
            current, self._analysis_interval(parsed), now
        )  # fmt: skip
        lost = judging and current.database_unavailable_since is not None
        unreadable: str | None = None
        asked = pending or due or lost
        try:
            if due:
                epochs = self._read(parsed, namespace, owners, lambda store: measure_epochs(
                    store, rollout.epoch_windows(current, now),
                    champion=parsed.champion.records, challenger=parsed.challenger.records,
                    units=parsed.decision.unit == "key",
                ))  # fmt: skip
            elif asked:  # before the first step, and to see a lost database come back
                self._read(parsed, namespace, owners, lambda store: store.statistics(
                    since=now, until=now, model=parsed.champion.records
                ))  # fmt: skip
        except DatabaseUnavailableError as exc:
            unreadable = str(exc)
        return rollout.Observation(
            route=route, missing_versions=missing, stages=stages, action=action, epochs=epochs,
            unavailable=tuple(
                f"{arm}: {problem}" for arm, ref in arms
                if (problem := _not_serving(ref.model_version, versions[ref.model_version]))
            ),
            deployed=frozenset(name for name, version in versions.items() if _deployed(version)),
            database_checked=asked and unreadable is None, database_problem=unreadable,
        )  # fmt: skip

    def _patch_target(
        self, parsed: ABTestSpec, router: TrafficRouter, namespace: str, patch: JsonPatch
    ) -> None:
        resource = router.resource
        self.kube.json_patch(
            group=resource.group, version=resource.version, plural=resource.plural,
            namespace=namespace, name=parsed.traffic.target_ref.name, operations=patch,
        )  # fmt: skip

    def _versions(self, parsed: ABTestSpec, namespace: str) -> dict[str, dict[str, Any] | None]:
        """The arms' ModelVersions by name (None: not found)."""
        return {
            ref.model_version: self.kube.get_custom_object(
                "modelversions", namespace, ref.model_version
            )
            for ref in (parsed.champion, parsed.challenger)
        }

    def _route(
        self,
        parsed: ABTestSpec,
        router: TrafficRouter,
        namespace: str,
        *,
        versions: dict[str, dict[str, Any] | None],
    ) -> Observed:
        """The serving resource as the router reads it, with the arms' ModelVersions
        (their ``uri`` is what KServe serves)."""
        resource = router.resource
        obj = self.kube.get_object(
            group=resource.group, version=resource.version, plural=resource.plural,
            namespace=namespace, name=parsed.traffic.target_ref.name,
        )  # fmt: skip

        def uri(name: str) -> str | None:
            value = ((versions.get(name) or {}).get("spec") or {}).get("uri")
            return value if isinstance(value, str) else None

        arms = Arms(
            parsed.champion.backend, parsed.challenger.backend,
            champion_uri=uri(parsed.champion.model_version),
            challenger_uri=uri(parsed.challenger.model_version),
            champion_usage=parsed.champion.records, challenger_usage=parsed.challenger.records,
        )  # fmt: skip
        return router.observe(obj, arms)

    def _read(
        self,
        parsed: ABTestSpec,
        namespace: str,
        owners: list[dict[str, Any]],
        query: Callable[[UsageStore], T],
    ) -> T:
        """``query`` on the arms' usage store; :class:`DatabaseUnavailableError` (in words that
        name the Secret, never its value) when the store cannot be opened or read."""
        database = parsed.database or self._owner_database(namespace, owners)
        if database is None:
            raise DatabaseUnavailableError(
                "spec.database: not set, and no owning LearningLoop to take it from"
            )
        ref = database.url_secret_ref
        try:
            logger = self.stores.logger_for(database_url(self.kube, namespace, ref))
            return query(logger.store)
        except KubeApiError:
            raise
        except Exception as exc:  # the Secret, the connection, the query: all the same here
            raise DatabaseUnavailableError(database_failure(exc, namespace, ref)) from exc

    def _owner_database(self, namespace: str, owners: list[dict[str, Any]]) -> DatabaseSpec | None:
        for owner in owners:
            if owner.get("kind") != "LearningLoop":
                continue
            loop = self.kube.get_custom_object("learningloops", namespace, str(owner.get("name")))
            if loop is None:
                continue
            try:
                return LearningLoopSpec.model_validate(loop.get("spec") or {}).database
            except ValidationError:
                continue
        return None

    def _analysis_interval(self, parsed: ABTestSpec) -> timedelta:
        if parsed.analysis_interval is not None:
            return planning.parse_duration(parsed.analysis_interval)
        return timedelta(seconds=self.config.poll_seconds)

    # --- status and metrics ---------------------------------------------------------------

    def _invalid(
        self, current: ABTestStatus, *, message: str, generation: int | None, event: EventSink
    ) -> None:
        current.phase = current.phase or ABTestPhase.PENDING
        if _ready_reason(current) != "InvalidSpec":
            event("Warning", "InvalidSpec", message)
        current.conditions = planning.set_condition(
            current.conditions, type="Ready", status=False, reason="InvalidSpec",
            message=message, now=self.clock(), generation=generation,
        )  # fmt: skip
        self.metrics.invalid_specs.inc()

    def _not_ready(
        self, current: ABTestStatus, reason: str, message: str, *, event: EventSink
    ) -> ABTestStatus:
        if _ready_reason(current) != reason:  # once when it starts, not at every reconcile
            event("Warning", reason, message)
        current.conditions = planning.set_condition(
            current.conditions, type="Ready", status=False, reason=reason, message=message,
            now=self.clock(), generation=current.observed_generation,
        )  # fmt: skip
        return current

    def _observe_metrics(self, *, namespace: str, name: str, plan: rollout.Plan) -> None:
        status = plan.status
        self.metrics.set_abtest(namespace, name, status.phase, status.weights)
        self.metrics.set_abtest_arms(namespace, name, status.evidence)
        if plan.ended:
            self.metrics.abtest_decisions.labels(status.verdict or "").inc()
            if status.started and status.finished:
                took = parse_timestamp(status.finished) - parse_timestamp(status.started)
                self.metrics.abtest_duration.observe(took.total_seconds())


def _ready_reason(status: ABTestStatus) -> str | None:
    return next((c.reason for c in status.conditions if c.type == "Ready"), None)


def _deployed(version: dict[str, Any] | None) -> bool:
    """Whether the operator runs this ModelVersion (deploy mode: ``spec.serving``)."""
    return version is not None and bool((version.get("spec") or {}).get("serving"))


def _not_serving(name: str, version: dict[str, Any] | None) -> str | None:
    """Deploy mode: why the version's Deployment cannot take traffic yet (None: it can,
    or the version is not deployed by the operator)."""
    if version is None or not _deployed(version):
        return None
    status = version.get("status") or {}
    if (status.get("serving") or {}).get("available") is True:
        return None
    condition: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Available"), {}
    )
    why = condition.get("message") or "not deployed yet"
    return f"ModelVersion {name} is not Available ({why})"
