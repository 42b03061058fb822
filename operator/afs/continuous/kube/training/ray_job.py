"""``ray.io/v1`` RayJob (KubeRay): a Ray cluster of a head and ``nodes − 1`` workers from
the pod template, the trainer's command as the job's ``entrypoint``, the cluster shut
down when the job ends.

The driver's output reaches Kubernetes only through the submitter pod (K8sJobMode), so
the operator gives KubeRay a submitter of its own: it runs the job as KubeRay's would,
then writes the last line of the driver's output that is the report (a JSON object with
``modelUri``) to its termination message. The driver prints its report on a line of its
own."""

from __future__ import annotations

import copy
import shlex
from typing import Any

from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec
from afs.continuous.kube.training.base import (
    ReportPod,
    RunContext,
    Trainer,
    TrainerState,
    run_limits,
    trainer_pod_template,
)

SUBMITTER = "ray-job-submitter"
#: KubeRay's limit: the RayCluster it names after the RayJob adds 6 characters to 53
MAX_NAME = 47
DRIVER_LOG = "/tmp/afs-driver.log"
#: KubeRay gives a submitter of the user's RAY_DASHBOARD_ADDRESS and RAY_JOB_SUBMISSION_ID;
#: a submitter restarted after the job was submitted follows it instead of submitting again
_SUBMIT = """set -o pipefail
address="http://$RAY_DASHBOARD_ADDRESS"
{{ if ray job status --address "$address" "$RAY_JOB_SUBMISSION_ID" >/dev/null 2>&1; then
    ray job logs --address "$address" --follow "$RAY_JOB_SUBMISSION_ID"
  else
    ray job submit --address "$address" --submission-id "$RAY_JOB_SUBMISSION_ID" -- {entrypoint}
  fi; }} 2>&1 | tee {log}
status=$?
grep -E '^[{{].*"modelUri"' {log} | tail -n 1 > /dev/termination-log
exit $status
"""


def submit_script(entrypoint: str) -> str:
    """The submitter's shell script for ``entrypoint`` (a shell-quoted command line)."""
    return _SUBMIT.format(entrypoint=entrypoint, log=DRIVER_LOG)


def submitter_security(pod: dict[str, Any], trainer: dict[str, Any]) -> dict[str, Any]:
    """The submitter's container runs the trainer's image as the trainer does (same user,
    same non-root setting), locked down as far as the restricted level asks: it only
    submits the job and follows its log."""
    context = copy.deepcopy(trainer.get("securityContext") or {})
    context.pop("privileged", None)
    context["allowPrivilegeEscalation"] = False
    context["capabilities"] = {"drop": ["ALL"]}
    if "seccompProfile" not in context and "seccompProfile" not in (
        pod.get("securityContext") or {}
    ):  # fmt: skip
        context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


class RayJobTrainer(Trainer):
    kind = "RayJob"
    api_version = "ray.io/v1"
    plural = "rayjobs"
    engine = "KubeRay (ray.io/v1)"
    sealed = (
        "rayClusterSpec.headGroupSpec", "rayClusterSpec.workerGroupSpecs", "submitterPodTemplate",
    )  # fmt: skip

    def build(self, run: RunContext) -> dict[str, Any]:
        if len(run.name) > MAX_NAME or not run.name[0].isalpha():
            raise ValueError(
                f"metadata.name: KubeRay takes RayJob names of at most {MAX_NAME} characters "
                f"that start with a letter; the run's name {run.name!r} is not one (name the "
                "LearningLoop shorter, starting with a letter)"
            )
        template = trainer_pod_template(run)
        trainer = template["spec"]["containers"][0]
        command = [*trainer.pop("command", []), *trainer.pop("args", [])]
        if not command:
            raise ValueError(
                "training.template.spec.containers.0.command: a RayJob's entrypoint is the "
                "trainer's command (the head and workers run Ray); set it"
            )
        entrypoint = shlex.join(command)
        # KubeRay runs the head and the workers under its own restart policy
        template["spec"].pop("restartPolicy", None)
        cluster: dict[str, Any] = {"headGroupSpec": {"rayStartParams": {}, "template": template}}
        workers = run.spec.training.nodes - 1
        if workers:
            cluster["workerGroupSpecs"] = [
                {
                    "groupName": "workers", "replicas": workers, "minReplicas": workers,
                    "maxReplicas": workers, "rayStartParams": {},
                    "template": copy.deepcopy(template),
                }
            ]  # fmt: skip
        pod = template["spec"]
        submitter_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "serviceAccountName": pod["serviceAccountName"],
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": SUBMITTER,
                    "image": trainer["image"],
                    "command": ["/bin/bash", "-c", submit_script(entrypoint)],
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                    "securityContext": submitter_security(pod, trainer),
                }
            ],
        }
        if "securityContext" in pod:
            submitter_spec["securityContext"] = copy.deepcopy(pod["securityContext"])
        submitter = {"metadata": {"labels": run.labels}, "spec": submitter_spec}
        training = run.spec.training
        spec: dict[str, Any] = {
            "entrypoint": entrypoint,
            "submissionMode": "K8sJobMode",
            "submitterPodTemplate": submitter,
            "shutdownAfterJobFinishes": True,
            "backoffLimit": training.backoff_limit,
            "rayClusterSpec": cluster,
        }
        spec.update(run_limits(run))
        return self.object(run, spec)

    def state(self, obj: dict[str, Any] | None) -> TrainerState:
        if obj is None:
            return TrainerState("Missing")
        status = obj.get("status") or {}
        deployment, job = status.get("jobDeploymentStatus"), status.get("jobStatus")
        message = str(status.get("message") or status.get("reason") or "")
        if deployment == "Failed" or job in ("FAILED", "STOPPED"):
            return TrainerState("Failed", message or f"Ray job {str(job or deployment).lower()}")
        if deployment == "Complete" and job == "SUCCEEDED":
            return TrainerState("Succeeded", message)
        return TrainerState("Running", message)

    def report_pod(self, name: str, spec: LearningLoopSpec) -> ReportPod:
        # KubeRay names the submitter Job like the RayJob
        return ReportPod({"job-name": name}, SUBMITTER)
