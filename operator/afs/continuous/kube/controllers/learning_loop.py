"""The LearningLoop controller: a timer per loop reconciles it with
:class:`LoopReconciler`, whose decisions come from the trigger core and
:mod:`afs.continuous.kube.planning`; the handler writes the resulting status once.

While the loop's ABTest runs, the loop is ``Testing`` and starts no run; when the test
ends the loop takes its outcome (a promoted challenger becomes the loop's champion, whose
records the triggers count from then on) and watches again.

Restart-safety: a run's Job and ModelVersion are named after the loop and the run number
(``runs.count + 1``), and creating them is idempotent, so an operator killed between
creating a Job and recording it adopts the same Job when it comes back; a finished run is
recorded in the status before the next one can start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from afs.continuous.config import DataGeneratorConfig, TriggerConfig
from afs.continuous.core.triggers import too_little_data
from afs.continuous.errors import StoreUnavailableError
from afs.continuous.kube import planning, pod_security, promotion
from afs.continuous.kube.api.v1alpha1 import (
    ABTestPhase,
    LearningLoopSpec,
    LearningLoopStatus,
    LoopPhase,
    ModelSelector,
    TriggerOutcome,
    VersionRef,
)
from afs.continuous.kube.client import KubeApiError, KubeClient
from afs.continuous.kube.controllers.runs import (
    RunFollower,
    not_ready,
)
from afs.continuous.kube.controllers.shared import (
    EventSink,
    OperatorConfig,
    StorePool,
    database_failure,
    database_url,
)
from afs.continuous.kube.metrics import OperatorMetrics
from afs.continuous.kube.naming import loop_state_key
from afs.continuous.kube.training import (
    trainer_for,
)
from afs.continuous.logger import UsageLogger
from afs.continuous.timeutil import Clock, format_timestamp, utc_now
from afs.continuous.trigger import RetrainTrigger, TriggerResult


@dataclass
class LoopReconciler(RunFollower):
    """One reconciliation of one LearningLoop (everything but the status write)."""

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
        event: EventSink,
    ) -> LearningLoopStatus:
        now = self.clock()
        current = LearningLoopStatus.from_status(status)
        current.observed_generation = generation
        try:
            parsed = LearningLoopSpec.model_validate(spec)
            level = self.config.pod_security_level
            refused = pod_security.refusal(pod_security.loop_violations(parsed, level), level)
            if refused is not None:
                raise ValueError(refused)
            # a spec the kind cannot express is refused now, not when the next run starts
            trainer_for(parsed.training.kind).build(
                self._context(
                    name=name, namespace=namespace, uid=uid, spec=parsed,
                    run=current.runs.count + 1,
                )
            )  # fmt: skip
        except (ValidationError, ValueError) as exc:
            message = (
                promotion.validation_message(exc) if isinstance(exc, ValidationError) else str(exc)
            )
            current.conditions = planning.set_condition(
                current.conditions, type="Ready", status=False, reason="InvalidSpec",
                message=message, now=now, generation=generation,
            )  # fmt: skip
            current.phase = LoopPhase.FAILED
            self.metrics.invalid_specs.inc()
            event("Warning", "InvalidSpec", message)
            return current
        current.champion = promotion.champion_of(parsed.promotion, current.champion)
        if parsed.suspend:
            current.phase = LoopPhase.SUSPENDED
            current.conditions = planning.set_condition(
                current.conditions, type="Ready", status=True, reason="Suspended",
                message="spec.suspend is true", now=now, generation=generation,
            )  # fmt: skip
            return current
        try:
            if current.challenger is not None and self._testing(
                namespace=namespace, status=current, event=event
            ):
                current.phase = LoopPhase.TESTING
                current.conditions = planning.set_condition(
                    current.conditions, type="Ready", status=True, reason="Testing",
                    message=f"ABTest {current.challenger} is running; no run starts until it ends",
                    now=now, generation=generation,
                )  # fmt: skip
                return current
        except KubeApiError as exc:
            return not_ready(
                current, reason="KubernetesApiError", message=str(exc),
                now=now, generation=generation, event=event,
            )  # fmt: skip
        parsed = _watching_champion(parsed, current)
        ref = parsed.database.url_secret_ref
        try:
            store = self.stores.logger_for(database_url(self.kube, namespace, ref))
        except Exception as exc:  # the secret or the database: a condition, not a crash loop
            return not_ready(
                current, reason="DatabaseUnavailable",
                message=database_failure(exc, namespace, ref),
                now=now, generation=generation, event=event,
            )  # fmt: skip
        try:
            return self._advance(
                name=name, namespace=namespace, uid=uid, generation=generation, now=now,
                parsed=parsed, current=current, store=store, event=event,
            )  # fmt: skip
        except StoreUnavailableError as exc:  # lost since it was opened: the next tick retries
            return not_ready(
                current, reason="DatabaseUnavailable",
                message=database_failure(exc, namespace, ref),
                now=now, generation=generation, event=event,
            )  # fmt: skip
        except KubeApiError as exc:  # e.g. RBAC: what was refused, retried at the next check
            return not_ready(
                current, reason="KubernetesApiError", message=str(exc),
                now=now, generation=generation, event=event,
            )  # fmt: skip

    def _testing(self, *, namespace: str, status: LearningLoopStatus, event: EventSink) -> bool:
        """Whether the loop's ABTest is still running; when it has ended, its outcome is
        taken into the status (the ABTest is named like its challenger)."""
        challenger = status.challenger
        assert challenger is not None
        test = self.kube.get_custom_object("abtests", namespace, challenger)
        if test is None:
            event("Warning", "ABTestMissing", f"ABTest {challenger} is gone; watching again")
            status.challenger = None
            return False
        phase = (test.get("status") or {}).get("phase")
        if phase not in {p.value for p in ABTestPhase if p.finished}:
            return True
        if phase == ABTestPhase.PROMOTED.value:
            try:
                arm = VersionRef.model_validate((test.get("spec") or {}).get("challenger"))
            except ValidationError:
                arm = VersionRef(model_version=challenger)
            status.champion, status.champion_model = arm.model_version, arm.records
            event("Normal", "ChampionChanged", f"{challenger} promoted by its ABTest")
        else:
            event(
                "Normal", "ABTestEnded",
                f"ABTest {challenger} ended {phase}; the champion stays {status.champion}",
            )  # fmt: skip
        status.challenger = None
        return False

    def _advance(
        self,
        *,
        name: str,
        namespace: str,
        uid: str | None,
        generation: int | None,
        now: datetime,
        parsed: LearningLoopSpec,
        current: LearningLoopStatus,
        store: UsageLogger,
        event: EventSink,
    ) -> LearningLoopStatus:
        """Follow the current run, then check the triggers when due (the store is open)."""
        trigger = RetrainTrigger(
            store,
            TriggerConfig(**parsed.triggers.model_dump()),
            generator_config=_generator_config(parsed),
            state_key=loop_state_key(namespace, name),
            clock=self.clock,
        )
        if current.current_run is not None:
            finished = self._follow_run(
                name=name, namespace=namespace, uid=uid, spec=parsed, status=current,
                trigger=trigger, event=event,
            )  # fmt: skip
            if not finished:
                current.phase = LoopPhase.TRAINING
                return current
        if not planning.check_due(current, parsed.check_interval, now):
            return current
        result = trigger.check_triggers()
        self.metrics.checks.labels(namespace, name).inc()
        current.last_check_time = format_timestamp(now)
        current.last_trigger = None if not result.triggered else _outcome(result, now)
        too_little = result.triggered and too_little_data(
            trigger.config, int(result.metrics["new_samples"])
        )
        if too_little:  # a too-small attempt, as in the library: reported, backed off
            trigger.mark_retrain_failed()
            current.phase = LoopPhase.WATCHING
            message = f"{result.reason}, but {too_little}; not trained"
            event("Normal", "NotEnoughData", message)
            current.conditions = planning.set_condition(
                current.conditions, type="Ready", status=True, reason="NotEnoughData",
                message=message, now=now, generation=generation,
            )  # fmt: skip
            return current
        if result.triggered:
            self.metrics.triggers.labels(
                current.last_trigger.type if current.last_trigger else ""
            ).inc()
            refused = self._start_run(
                name=name, namespace=namespace, uid=uid, spec=parsed, status=current,
                trigger=trigger, event=event, reason=result.reason,
            )  # fmt: skip
            if refused is not None:  # fires again at the next check
                current.phase = LoopPhase.WATCHING
                return not_ready(
                    current, reason=refused[0], message=refused[1], now=now,
                    generation=generation, event=event,
                )  # fmt: skip
        else:
            current.phase = LoopPhase.WATCHING
        current.conditions = planning.set_condition(
            current.conditions, type="Ready", status=True, reason="Checked",
            message=result.reason, now=now, generation=generation,
        )  # fmt: skip
        return current


def _watching_champion(spec: LearningLoopSpec, status: LearningLoopStatus) -> LearningLoopSpec:
    """The spec as the triggers and the next data set see it: once an ABTest promoted a
    champion, its records (``championModel``) rather than ``spec.model``'s."""
    if status.champion_model is None or status.champion_model == spec.model.name:
        return spec
    watched = ModelSelector(name=status.champion_model, expert=spec.model.expert)
    return spec.model_copy(update={"model": watched})


def _generator_config(spec: LearningLoopSpec) -> DataGeneratorConfig:
    config = spec.dataset.to_config()
    config.model = spec.model.name
    config.expert = spec.model.expert
    return config


def _outcome(result: TriggerResult, now: datetime) -> TriggerOutcome:
    return TriggerOutcome(
        type=None if result.trigger_type is None else result.trigger_type.value,
        reason=result.reason,
        metrics=result.metrics,
        time=format_timestamp(now),
    )
