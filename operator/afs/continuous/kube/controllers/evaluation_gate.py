"""The evaluation gate's I/O for one run: start the evaluator Job, read its report, and
write the verdict on the ModelVersion (``status.evaluation``, condition ``Evaluated``,
stage ``Rejected`` when it fails). The rule itself is pure
(:func:`afs.continuous.core.evaluation.judge_evaluation`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from afs.continuous.core.evaluation import judge_evaluation
from afs.continuous.kube import planning, promotion
from afs.continuous.kube.api.evaluation import EvaluationStatus
from afs.continuous.kube.api.v1alpha1 import (
    LearningLoopSpec,
    LearningLoopStatus,
    ModelVersionStatus,
    Stage,
)
from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.training import RunContext, trainer_for
from afs.continuous.kube.training.evaluation import (
    evaluation_job,
    evaluation_job_name,
    parse_evaluator_report,
)
from afs.continuous.timeutil import Clock, format_timestamp


@dataclass(frozen=True)
class GateOutcome:
    passed: bool
    summary: str
    """One line: the checks passed, or why not."""


@dataclass
class EvaluationGate:
    kube: KubeClient
    clock: Clock

    def start(
        self, *, run: RunContext, status: LearningLoopStatus, version: str, candidate_uri: str
    ) -> str:
        """Create (or adopt) the evaluator Job of ``version``; its name."""
        champion = promotion.champion_of(run.spec.promotion, status.champion)
        champion_uri = None
        if champion is not None:
            found = self.kube.get_custom_object("modelversions", run.namespace, champion)
            uri = ((found or {}).get("spec") or {}).get("uri")
            champion_uri = uri if isinstance(uri, str) and uri else None
        job = evaluation_job(run, candidate_uri=candidate_uri, champion_uri=champion_uri)
        self.kube.create_job(job)
        name = str(job["metadata"]["name"])
        self.show_running(namespace=run.namespace, version=version, job=name)
        return name

    def show_running(self, *, namespace: str, version: str, job: str) -> None:
        """The version shows it is being evaluated (again, if its own handler's first
        status write raced ours)."""
        current = self._status(namespace, version)
        if current is None or (current.evaluation is not None and current.evaluation.job == job):
            return
        now = self.clock()
        current.evaluation = EvaluationStatus(
            phase="Running", job=job, started=format_timestamp(now)
        )
        self._write(namespace, version, current, stage=None, evaluated=(
            None, "Evaluating", f"evaluator Job {job} running",
        ))  # fmt: skip

    def follow(
        self, *, spec: LearningLoopSpec, namespace: str, run_name: str, version: str,
        compared: bool,
    ) -> GateOutcome | None:  # fmt: skip
        """The verdict once the evaluator Job ended (None while it runs), written on the
        version: Passed, or Failed and the version Rejected."""
        assert spec.evaluation is not None
        job_name = evaluation_job_name(run_name)
        job = self.kube.get_job(namespace, job_name)
        state = trainer_for("Job").state(job)
        if state.phase == "Running":
            self.show_running(namespace=namespace, version=version, job=job_name)
            return None
        metrics: dict[str, float] = {}
        champion: dict[str, float] | None = None
        summary = ""
        if state.phase == "Succeeded":
            evaluator = spec.evaluation.template["spec"]["containers"][0]["name"]
            pods = self.kube.job_pods(namespace, job_name)
            try:
                report = parse_evaluator_report(planning.trainer_message(pods, evaluator))
            except ValueError as exc:
                reasons = [f"evaluator report: {exc}"]
            else:
                metrics, champion = report.metrics, report.champion if compared else None
                verdict = judge_evaluation(
                    spec.evaluation.rule(), metrics, (champion or {}) if compared else None
                )
                reasons = list(verdict.reasons)
                if verdict.passed:
                    summary = verdict.summary
        else:
            what = "disappeared" if state.phase == "Missing" else "failed"
            reasons = [f"evaluator Job {job_name} {what}" + (
                f": {state.message}" if state.message else "")]  # fmt: skip
        passed = not reasons
        now = self.clock()
        current = self._status(namespace, version) or ModelVersionStatus()
        started = current.evaluation.started if current.evaluation is not None else None
        current.evaluation = EvaluationStatus(
            phase="Passed" if passed else "Failed", job=job_name, started=started,
            finished=format_timestamp(now), metrics=metrics, champion=champion, reasons=reasons,
        )  # fmt: skip
        if passed:
            self._write(namespace, version, current, stage=None,
                        evaluated=(True, "Passed", summary))  # fmt: skip
            return GateOutcome(True, summary)
        why = "; ".join(reasons)
        self._write(namespace, version, current, stage=Stage.REJECTED,
                    evaluated=(False, "EvaluationFailed", why))  # fmt: skip
        return GateOutcome(False, why)

    def promote_to(self, *, namespace: str, version: str, stage: Stage) -> None:
        """A version that passed becomes what its creator meant (a Challenger)."""
        current = self._status(namespace, version)
        if current is not None and current.stage != stage:
            self.kube.patch_custom_status("modelversions", namespace, version,
                                          {"stage": stage.value})  # fmt: skip

    def _status(self, namespace: str, version: str) -> ModelVersionStatus | None:
        found = self.kube.get_custom_object("modelversions", namespace, version)
        if found is None:
            return None
        return ModelVersionStatus.from_status(found.get("status"))

    def _write(
        self,
        namespace: str,
        version: str,
        current: ModelVersionStatus,
        *,
        stage: Stage | None,
        evaluated: tuple[bool | None, str, str],
    ) -> None:
        state, reason, message = evaluated
        current.conditions = planning.set_condition(
            current.conditions, type="Evaluated", status=state, reason=reason,
            message=message, now=self.clock(),
        )  # fmt: skip
        patch: dict[str, Any] = {
            "evaluation": current.evaluation.model_dump(by_alias=True, mode="json")
            if current.evaluation is not None else None,
            "conditions": [c.model_dump(by_alias=True, mode="json") for c in current.conditions],
        }  # fmt: skip
        if stage is not None:
            patch["stage"] = stage.value
        self.kube.patch_custom_status("modelversions", namespace, version, patch)
