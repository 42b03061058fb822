"""``batch/v1`` Job: one pod; the data set is exported by an init container in it, to a
volume the trainer shares (an ``emptyDir`` unless the loop names a claim)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from afs.continuous.kube import planning
from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec
from afs.continuous.kube.training.base import (
    ReportPod,
    RunContext,
    Trainer,
    TrainerState,
    run_limits,
    trainer_pod_template,
)
from afs.continuous.kube.training.export import (
    DEFAULT_EXPORTER_IMAGE,
    exporter_container,
    exporter_volumes,
)


class JobTrainer(Trainer):
    kind = "Job"
    api_version = "batch/v1"
    plural = "jobs"
    engine = "Kubernetes"
    sealed = ("template",)

    @property
    def exports_first(self) -> bool:
        return False

    def build(self, run: RunContext) -> dict[str, Any]:
        template = trainer_pod_template(run, in_pod_export=True)
        pod_spec = template["spec"]
        pod_spec["initContainers"] = [exporter_container(run), *pod_spec.get("initContainers", [])]
        pod_spec["volumes"] += exporter_volumes(run)
        pod_spec.setdefault("restartPolicy", "Never")
        training = run.spec.training
        job_spec: dict[str, Any] = {"backoffLimit": training.backoff_limit, "template": template}
        job_spec.update(run_limits(run))
        return self.object(run, job_spec)

    def state(self, obj: dict[str, Any] | None) -> TrainerState:
        phase = planning.job_state(obj)
        message = ""
        for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Failed" and condition.get("status") == "True":
                message = str(condition.get("message") or condition.get("reason") or "")
        return TrainerState(phase, message)

    def report_pod(self, name: str, spec: LearningLoopSpec) -> ReportPod:
        return ReportPod(
            {"job-name": name}, spec.training.template["spec"]["containers"][0]["name"]
        )


def training_job(
    *,
    loop: str,
    namespace: str,
    uid: str | None,
    spec: LearningLoopSpec,
    run: int,
    since: datetime | None,
    exporter_image: str = DEFAULT_EXPORTER_IMAGE,
) -> dict[str, Any]:
    """The Job of run ``run`` of ``loop`` (owned by the loop, named for the run)."""
    context = RunContext(
        loop=loop, namespace=namespace, uid=uid, spec=spec, run=run, since=since,
        exporter_image=exporter_image,
    )  # fmt: skip
    return JobTrainer().build(context)
