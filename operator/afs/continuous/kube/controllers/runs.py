"""A LearningLoop's runs, from start to end: the export and training objects, the
ModelVersion that records what was trained, the evaluation gate, and the ABTest the
version goes on to (or why the run failed, or was rejected). A mixin of
:class:`~afs.continuous.kube.controllers.learning_loop.LoopReconciler`, which decides
when a run starts; this module follows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from afs.continuous.kube import planning, promotion
from afs.continuous.kube.api.v1alpha1 import (
    CurrentRun,
    LearningLoopSpec,
    LearningLoopStatus,
    LoopPhase,
    RunOutcome,
    Stage,
)
from afs.continuous.kube.client import KindNotServedError, KubeClient
from afs.continuous.kube.controllers.evaluation_gate import EvaluationGate
from afs.continuous.kube.controllers.run_results import (
    dataset_report,
    model_version_manifest,
    run_dataset,
)
from afs.continuous.kube.controllers.shared import EventSink, OperatorConfig
from afs.continuous.kube.metrics import OperatorMetrics
from afs.continuous.kube.naming import run_name
from afs.continuous.kube.training import ExportedDataset, RunContext, Trainer, trainer_for
from afs.continuous.kube.training.base import TRAINING_SERVICE_ACCOUNT
from afs.continuous.kube.training.export import (
    export_job,
    export_job_name,
    training_service_account,
)
from afs.continuous.timeutil import Clock, format_timestamp
from afs.continuous.trigger import RetrainTrigger


class RunFollower:
    """Starts and follows one run at a time (see the module's docstring)."""

    kube: KubeClient
    config: OperatorConfig
    clock: Clock
    metrics: OperatorMetrics

    @property
    def gate(self) -> EvaluationGate:
        return EvaluationGate(self.kube, self.clock)

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
            return "TrainerKindUnavailable", unavailable_message(trainer)
        manifest = export_job(context) if trainer.exports_first else trainer.build(context)
        account = manifest["spec"]["template"]["spec"]["serviceAccountName"]
        if trainer.exports_first or account == TRAINING_SERVICE_ACCOUNT:  # each run: it may
            self.kube.ensure_service_account(training_service_account(namespace))  # be gone
        job = self.kube.create_job(manifest)
        if uid is not None and not planning.controlled_by(job, uid):
            return "NameTaken", taken_message("Job", manifest["metadata"]["name"])
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
            not_ready(
                status, reason="TrainerKindUnavailable", message=unavailable_message(trainer),
                now=now, generation=None, event=event,
            )  # fmt: skip
            return None
        if uid is not None and not planning.controlled_by(created, uid):
            not_ready(
                status, reason="NameTaken", message=taken_message(trainer.kind, run.job),
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
                    not_ready(
                        status, reason="NameTaken",
                        message=taken_message("ModelVersion", version_name),
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
        return _end_run(status, run, outcome)

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
            outcome = self._fail(
                status=status, run=run, trigger=trigger, event=event, rejected=version,
                message=f"{version} rejected by the evaluation gate: {gate.summary}",
            )  # fmt: skip
        return _end_run(status, run, outcome)

    def _fail(
        self,
        *,
        status: LearningLoopStatus,
        run: CurrentRun,
        trigger: RetrainTrigger,
        event: EventSink,
        message: str,
        rejected: str | None = None,
    ) -> RunOutcome:
        """A run that failed, or whose version ``rejected`` the evaluation gate refused:
        counted, said, and the trigger backs off instead of firing again at once (a later
        run has more data)."""
        trigger.mark_retrain_failed()
        if rejected is None:
            status.runs.failed += 1
        else:
            status.runs.rejected += 1
        self.metrics.runs.labels("failed" if rejected is None else "rejected").inc()
        status.conditions = planning.set_condition(
            status.conditions, type="LastRunSucceeded", status=False,
            reason="RunFailed" if rejected is None else "Rejected",
            message=f"run {run.number}: {message}", now=self.clock(),
        )  # fmt: skip
        event("Warning", "RunFailed" if rejected is None else "EvaluationFailed",
              f"run {run.number}: {message}")  # fmt: skip
        return RunOutcome(
            number=run.number, job=run.job, result="Failed" if rejected is None else "Rejected",
            finished=format_timestamp(self.clock()), message=message, model_version=rejected,
        )  # fmt: skip


def _end_run(status: LearningLoopStatus, run: CurrentRun, outcome: RunOutcome) -> bool:
    """The run is over: recorded among the recent ones, no longer current."""
    status.runs.count = max(status.runs.count, run.number)
    status.runs.recent = [*status.runs.recent, outcome][-planning.RECENT_RUNS :]
    status.current_run = None
    return True


def not_ready(
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


def taken_message(kind: str, name: str) -> str:
    return (
        f"{kind} {name} exists and belongs to another owner (a deleted LearningLoop of the "
        "same name, until garbage collection removes it); waiting for the name to be free"
    )


def unavailable_message(trainer: Trainer) -> str:
    return (
        f"training.kind {trainer.kind}: the cluster does not serve {trainer.plural}."
        f"{trainer.group} (install {trainer.engine}, or choose another kind); "
        "no run starts until it does"
    )
