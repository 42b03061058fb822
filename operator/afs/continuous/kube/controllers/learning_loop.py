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
    CurrentRun,
    LearningLoopSpec,
    LearningLoopStatus,
    LoopPhase,
    ModelSelector,
    RunOutcome,
    Stage,
    TriggerOutcome,
    VersionRef,
)
from afs.continuous.kube.client import KindNotServedError, KubeApiError, KubeClient
from afs.continuous.kube.controllers.evaluation_gate import EvaluationGate
from afs.continuous.kube.controllers.run_results import (
    dataset_report,
    model_version_manifest,
    run_dataset,
)
from afs.continuous.kube.controllers.shared import (
    EventSink,
    OperatorConfig,
    StorePool,
    database_failure,
    database_url,
)
from afs.continuous.kube.metrics import OperatorMetrics
from afs.continuous.kube.naming import loop_state_key, run_name
from afs.continuous.kube.training import (
    ExportedDataset,
    RunContext,
    Trainer,
    trainer_for,
)
from afs.continuous.kube.training.base import TRAINING_SERVICE_ACCOUNT
from afs.continuous.kube.training.export import (
    export_job,
    export_job_name,
    training_service_account,
)
from afs.continuous.logger import UsageLogger
from afs.continuous.timeutil import Clock, format_timestamp, utc_now
from afs.continuous.trigger import RetrainTrigger, TriggerResult


@dataclass
class LoopReconciler:
    """One reconciliation of one LearningLoop (everything but the status write)."""

    kube: KubeClient
    config: OperatorConfig
    stores: StorePool
    clock: Clock = utc_now
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)

    @property
    def gate(self) -> EvaluationGate:
        return EvaluationGate(self.kube, self.clock)

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
            return _not_ready(
                current, reason="KubernetesApiError", message=str(exc),
                now=now, generation=generation, event=event,
            )  # fmt: skip
        parsed = _watching_champion(parsed, current)
        ref = parsed.database.url_secret_ref
        try:
            store = self.stores.logger_for(database_url(self.kube, namespace, ref))
        except Exception as exc:  # the secret or the database: a condition, not a crash loop
            return _not_ready(
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
            return _not_ready(
                current, reason="DatabaseUnavailable",
                message=database_failure(exc, namespace, ref),
                now=now, generation=generation, event=event,
            )  # fmt: skip
        except KubeApiError as exc:  # e.g. RBAC: what was refused, retried at the next check
            return _not_ready(
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
                return _not_ready(
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

    def _context(
        self,
        *,
        name: str,
        namespace: str,
        uid: str | None,
        spec: LearningLoopSpec,
        run: int,
        since: datetime | None = None,
        dataset: ExportedDataset | None = None,
    ) -> RunContext:
        return RunContext(
            loop=name, namespace=namespace, uid=uid, spec=spec, run=run, since=since,
            exporter_image=self.config.exporter_image, dataset=dataset or ExportedDataset(),
        )  # fmt: skip

    def _start_run(
        self,
        *,
        name: str,
        namespace: str,
        uid: str | None,
        spec: LearningLoopSpec,
        status: LearningLoopStatus,
        trigger: RetrainTrigger,
        event: EventSink,
        reason: str,
    ) -> tuple[str, str] | None:
        """Create the run's first object (the training Job, or the export Job of a
        distributed run); the reason and message when it could not."""
        run = status.runs.count + 1
        trainer = trainer_for(spec.training.kind)
        context = self._context(
            name=name, namespace=namespace, uid=uid, spec=spec, run=run,
            since=trigger.state.last_retrain,
        )  # fmt: skip
        if trainer.exports_first and not self.kube.serves(
            group=trainer.group, version=trainer.version, plural=trainer.plural
        ):  # said before a data set is exported for nothing
            return "TrainerKindUnavailable", _unavailable(trainer)
        manifest = export_job(context) if trainer.exports_first else trainer.build(context)
        account = manifest["spec"]["template"]["spec"]["serviceAccountName"]
        if trainer.exports_first or account == TRAINING_SERVICE_ACCOUNT:  # each run: it may
            self.kube.ensure_service_account(training_service_account(namespace))  # be gone
        job = self.kube.create_job(manifest)
        if uid is not None and not planning.controlled_by(job, uid):
            return "NameTaken", _taken_message("Job", manifest["metadata"]["name"])
        status.current_run = CurrentRun(
            number=run,
            job=context.name,
            started=format_timestamp(self.clock()),
            kind=None if trainer.kind == "Job" else spec.training.kind,
            phase="Exporting" if trainer.exports_first else None,
        )
        status.phase = LoopPhase.TRAINING
        self.metrics.runs.labels("started").inc()
        what = f"Job {context.name}"
        if trainer.exports_first:
            export = manifest["metadata"]["name"]
            what = f"exporting the data set (Job {export}) for {trainer.kind} {context.name}"
        event("Normal", "RunStarted", f"run {run}: {what} ({reason})")
        return None

    def _read_training(self, trainer: Trainer, namespace: str, name: str) -> dict[str, Any] | None:
        if trainer.kind == "Job":
            return self.kube.get_job(namespace, name)
        return self.kube.get_object(
            group=trainer.group, version=trainer.version, plural=trainer.plural,
            namespace=namespace, name=name,
        )  # fmt: skip

    def _start_training(
        self,
        *,
        trainer: Trainer,
        name: str,
        namespace: str,
        uid: str | None,
        spec: LearningLoopSpec,
        status: LearningLoopStatus,
        event: EventSink,
    ) -> str | None:
        """A distributed run whose export succeeded: its training object, created from
        the exporter's report; the reason the run failed, if it did."""
        run = status.current_run
        assert run is not None
        export = export_job_name(self._context(
            name=name, namespace=namespace, uid=uid, spec=spec, run=run.number
        ))  # fmt: skip
        job = self.kube.get_job(namespace, export)
        state = trainer_for("Job").state(job)
        if state.phase == "Running":
            return None
        if state.phase != "Succeeded":
            why = "disappeared" if state.phase == "Missing" else "failed"
            return f"data set export (Job {export}) {why}" + (
                f": {state.message}" if state.message else ""
            )
        dataset = dataset_report(
            self.kube.job_pods(namespace, export),
            dataset_id=f"{namespace}/{run_name(name, run.number)}",
        )
        context = self._context(
            name=name, namespace=namespace, uid=uid, spec=spec, run=run.number, dataset=dataset
        )
        try:
            manifest = trainer.build(context)
        except ValueError as exc:  # the spec changed since the run started
            return str(exc)
        now = self.clock()
        try:
            created = self.kube.create_object(
                group=trainer.group, version=trainer.version, plural=trainer.plural,
                manifest=manifest,
            )  # fmt: skip
        except KindNotServedError:  # uninstalled since the run started: tried again
            _not_ready(
                status, reason="TrainerKindUnavailable", message=_unavailable(trainer),
                now=now, generation=None, event=event,
            )  # fmt: skip
            return None
        if uid is not None and not planning.controlled_by(created, uid):
            _not_ready(
                status, reason="NameTaken", message=_taken_message(trainer.kind, run.job),
                now=now, generation=None, event=event,
            )  # fmt: skip
            return None
        run.dataset_sha256, run.sample_count = dataset.sha256, dataset.sample_count
        run.dataset_id, run.redaction = dataset.dataset_id, dataset.redaction
        run.phase = "Training"
        samples = "" if dataset.sample_count is None else f" on {dataset.sample_count} samples"
        event("Normal", "TrainingStarted", f"run {run.number}: {trainer.kind} {run.job}{samples}")
        return None

    def _follow_run(
        self,
        *,
        name: str,
        namespace: str,
        uid: str | None,
        spec: LearningLoopSpec,
        status: LearningLoopStatus,
        trigger: RetrainTrigger,
        event: EventSink,
    ) -> bool:
        """Settle the current run if it finished (a distributed run whose export finished
        gets its training object); True when there is no run left."""
        assert status.current_run is not None
        run = status.current_run
        if run.phase == "Evaluating":
            return self._follow_evaluation(
                name=name, spec=spec, namespace=namespace, uid=uid, status=status,
                trigger=trigger, event=event,
            )  # fmt: skip
        trainer = trainer_for(run.kind or "Job")  # the kind it started with
        obj = self._read_training(trainer, namespace, run.job)
        failure: str | None = None
        if run.phase == "Exporting" and obj is None:
            failure = self._start_training(
                trainer=trainer, name=name, namespace=namespace, uid=uid, spec=spec,
                status=status, event=event,
            )  # fmt: skip
            if failure is None:
                return False
        elif run.phase == "Exporting":  # created by an operator that died before saying so
            run.phase = "Training"
        state = trainer.state(obj)
        if failure is None and state.phase == "Running":
            return False
        if failure is None and state.phase != "Succeeded":
            failure = f"{trainer.kind} " + (
                "disappeared" if state.phase == "Missing"
                else "failed" + (f": {state.message}" if state.message else "")
            )  # fmt: skip
        now = self.clock()
        outcome: RunOutcome
        if failure is None:
            where = trainer.report_pod(run.job, spec)
            pods = self.kube.pods(namespace, where.labels)
            try:
                report = planning.parse_termination_message(
                    planning.trainer_message(pods, where.container)
                )
            except ValueError as exc:
                outcome = self._fail(
                    status=status, run=run, trigger=trigger, event=event,
                    message=f"trainer report: {exc}",
                )  # fmt: skip
            else:
                dataset = run_dataset(
                    trainer, run, obj, pods, dataset_id=f"{namespace}/{run_name(name, run.number)}"
                )
                manifest = model_version_manifest(
                    name, namespace, uid, spec, run, report, dataset, status, trainer.kind
                )
                version_name = manifest["metadata"]["name"]
                champion = promotion.champion_of(spec.promotion, status.champion)
                tested = spec.promotion.traffic is not None and champion is not None
                gated = spec.evaluation is not None  # a Challenger only once it passes
                stage = Stage.CHALLENGER if tested and not gated else Stage.CANDIDATE
                manifest["metadata"]["annotations"] = {promotion.INITIAL_STAGE: stage.value}
                recorded = self.kube.create_custom_object("modelversions", manifest)
                if uid is not None and not planning.controlled_by(recorded, uid):
                    _not_ready(
                        status, reason="NameTaken",
                        message=_taken_message("ModelVersion", version_name),
                        now=now, generation=None, event=event,
                    )  # fmt: skip
                    return False  # the run stays current: recorded once the name is free
                if gated:
                    context = self._context(
                        name=name, namespace=namespace, uid=uid, spec=spec, run=run.number
                    )
                    job = self.gate.start(
                        run=context, status=status, version=version_name,
                        candidate_uri=report.model_uri,
                    )  # fmt: skip
                    run.phase, run.model_version = "Evaluating", version_name
                    event(
                        "Normal",
                        "EvaluationStarted",
                        f"run {run.number}: {version_name} on the held-out set (Job {job})",
                    )
                    return False  # fmt: skip
                outcome = self._release(
                    name=name, namespace=namespace, uid=uid, spec=spec, status=status,
                    run=run, trigger=trigger, event=event, version=version_name,
                )  # fmt: skip
        else:
            outcome = self._fail(
                status=status, run=run, trigger=trigger, event=event, message=failure
            )
        status.runs.count = max(status.runs.count, run.number)
        status.runs.recent = [*status.runs.recent, outcome][-planning.RECENT_RUNS :]
        status.current_run = None
        return True

    def _release(
        self,
        *,
        name: str,
        namespace: str,
        uid: str | None,
        spec: LearningLoopSpec,
        status: LearningLoopStatus,
        run: CurrentRun,
        trigger: RetrainTrigger,
        event: EventSink,
        version: str,
    ) -> RunOutcome:
        """A recorded version goes on to its ABTest (when there is a champion and a
        route), and the run counts as succeeded."""
        now = self.clock()
        champion = promotion.champion_of(spec.promotion, status.champion)
        tested = spec.promotion.traffic is not None and champion is not None
        if tested:
            assert champion is not None
            test = promotion.challenger_test(
                loop=name, namespace=namespace, uid=uid, run=run.number,
                promotion=spec.promotion, champion=champion, challenger=version,
            )  # fmt: skip
            self.kube.create_custom_object("abtests", test)
            status.challenger = version
            event("Normal", "ABTestCreated", f"{version} against {champion}")
        elif spec.promotion.traffic is not None:
            event(
                "Warning", "NoChampion",
                f"{version} stays a Candidate: no champion to test it against "
                "(set spec.promotion.champion)",
            )  # fmt: skip
        trigger.mark_retrain_completed()
        status.last_retrain_time = format_timestamp(now)
        outcome = RunOutcome(
            number=run.number, job=run.job, result="Succeeded",
            finished=format_timestamp(now), model_version=version,
        )  # fmt: skip
        status.runs.succeeded += 1
        self.metrics.runs.labels("succeeded").inc()
        event(
            "Normal",
            "RunSucceeded",
            f"run {run.number}: ModelVersion {outcome.model_version}",
        )
        return outcome

    def _follow_evaluation(
        self,
        *,
        name: str,
        namespace: str,
        uid: str | None,
        spec: LearningLoopSpec,
        status: LearningLoopStatus,
        trigger: RetrainTrigger,
        event: EventSink,
    ) -> bool:
        """The run's version is being evaluated: once the gate's verdict is in, it goes
        on to its ABTest, or is Rejected and the run ends so (nothing meets users)."""
        run = status.current_run
        assert run is not None and run.model_version is not None and spec.evaluation is not None
        version = run.model_version
        champion = promotion.champion_of(spec.promotion, status.champion)
        gate = self.gate.follow(
            spec=spec, namespace=namespace, run_name=run_name(name, run.number),
            version=version, compared=champion is not None,
        )  # fmt: skip
        if gate is None:
            return False
        if gate.passed:
            event("Normal", "EvaluationPassed", f"run {run.number}: {version}: {gate.summary}")
            if spec.promotion.traffic is not None and champion is not None:
                self.gate.promote_to(namespace=namespace, version=version, stage=Stage.CHALLENGER)
            outcome = self._release(
                name=name, namespace=namespace, uid=uid, spec=spec, status=status, run=run,
                trigger=trigger, event=event, version=version,
            )  # fmt: skip
        else:
            message = f"{version} rejected by the evaluation gate: {gate.summary}"
            event("Warning", "EvaluationFailed", f"run {run.number}: {message}")
            trigger.mark_retrain_failed()  # back off; a later run has more data
            status.runs.rejected += 1
            self.metrics.runs.labels("rejected").inc()
            status.conditions = planning.set_condition(
                status.conditions, type="LastRunSucceeded", status=False, reason="Rejected",
                message=f"run {run.number}: {message}", now=self.clock(),
            )  # fmt: skip
            outcome = RunOutcome(
                number=run.number, job=run.job, result="Rejected", model_version=version,
                finished=format_timestamp(self.clock()), message=message,
            )  # fmt: skip
        status.runs.count = max(status.runs.count, run.number)
        status.runs.recent = [*status.runs.recent, outcome][-planning.RECENT_RUNS :]
        status.current_run = None
        return True

    def _fail(
        self,
        *,
        status: LearningLoopStatus,
        run: CurrentRun,
        trigger: RetrainTrigger,
        event: EventSink,
        message: str,
    ) -> RunOutcome:
        trigger.mark_retrain_failed()  # the trigger backs off instead of firing again at once
        status.runs.failed += 1
        self.metrics.runs.labels("failed").inc()
        status.conditions = planning.set_condition(
            status.conditions, type="LastRunSucceeded", status=False, reason="RunFailed",
            message=f"run {run.number}: {message}", now=self.clock(),
        )  # fmt: skip
        event("Warning", "RunFailed", f"run {run.number}: {message}")
        return RunOutcome(
            number=run.number, job=run.job, result="Failed",
            finished=format_timestamp(self.clock()), message=message,
        )  # fmt: skip


def _not_ready(
    current: LearningLoopStatus,
    *,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
    event: EventSink,
) -> LearningLoopStatus:
    """``Ready=False`` for ``reason`` and the Warning Event that says the same (messages
    that may quote a database URL are redacted by the caller: status and Events are
    readable by many)."""
    current.conditions = planning.set_condition(
        current.conditions, type="Ready", status=False, reason=reason, message=message,
        now=now, generation=generation,
    )  # fmt: skip
    event("Warning", reason, message)
    return current


def _watching_champion(spec: LearningLoopSpec, status: LearningLoopStatus) -> LearningLoopSpec:
    """The spec as the triggers and the next data set see it: once an ABTest promoted a
    champion, its records (``championModel``) rather than ``spec.model``'s."""
    if status.champion_model is None or status.champion_model == spec.model.name:
        return spec
    watched = ModelSelector(name=status.champion_model, expert=spec.model.expert)
    return spec.model_copy(update={"model": watched})


def _taken_message(kind: str, name: str) -> str:
    return (
        f"{kind} {name} exists and belongs to another owner (a deleted LearningLoop of the "
        "same name, until garbage collection removes it); waiting for the name to be free"
    )


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


def _unavailable(trainer: Trainer) -> str:
    return (
        f"training.kind {trainer.kind}: the cluster does not serve {trainer.plural}."
        f"{trainer.group} (install {trainer.engine}, or choose another kind); "
        "no run starts until it does"
    )
