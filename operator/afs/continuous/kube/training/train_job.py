"""``trainer.kubeflow.org/v1alpha1`` TrainJob (Kubeflow Trainer v2): the trainer's
image, command and resources become the TrainJob's ``trainer``; the rest of the pod
(our volume, the account, scheduling) reaches the runtime's ``node`` pods through a
``runtimePatches`` entry of ours (Kubeflow Trainer 2.3 or later). The runtime is
``training.spec.runtimeRef``, by default the ``torch-distributed`` ClusterTrainingRuntime
that Kubeflow Trainer installs. Rank 0 (the ``node`` job's first pod) reports."""

from __future__ import annotations

from typing import Any

from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec
from afs.continuous.kube.training.base import (
    ReportPod,
    RunContext,
    Trainer,
    TrainerState,
    condition_state,
    trainer_pod_template,
)

#: the runtimes' trainer job and container
NODE = "node"
MANAGER = "continuous.afs.dev/operator"
DEFAULT_RUNTIME = {"name": "torch-distributed", "kind": "ClusterTrainingRuntime"}
#: what the pod template may hold: the fields a runtime patch can set
_POD_FIELDS = {
    "affinity", "imagePullSecrets", "nodeSelector", "schedulingGates", "securityContext",
    "serviceAccountName", "terminationGracePeriodSeconds", "tolerations", "volumes",
    "containers", "automountServiceAccountToken", "restartPolicy",
}  # fmt: skip
_TRAINER_FIELDS = {"name", "image", "command", "args", "env", "resources"}
_PATCHED_FIELDS = {"volumeMounts", "securityContext", "terminationMessagePolicy"}


class TrainJobTrainer(Trainer):
    kind = "TrainJob"
    api_version = "trainer.kubeflow.org/v1alpha1"
    plural = "trainjobs"
    engine = "Kubeflow Trainer v2 (trainer.kubeflow.org/v1alpha1)"
    sealed = ("runtimePatches",)

    def build(self, run: RunContext) -> dict[str, Any]:
        template = trainer_pod_template(run)
        pod = template["spec"]
        for field in sorted(set(pod) - _POD_FIELDS):
            raise ValueError(
                f"training.template.spec.{field}: a TrainJob's pods come from its runtime; "
                f"only {', '.join(sorted(_POD_FIELDS - {'containers'}))} can be set"
            )
        if len(pod["containers"]) > 1:
            raise ValueError(
                "training.template.spec.containers: a TrainJob has one trainer container; "
                "sidecars belong in its runtime"
            )
        container = pod["containers"][0]
        for field in sorted(set(container) - _TRAINER_FIELDS - _PATCHED_FIELDS):
            raise ValueError(
                f"training.template.spec.containers.0.{field}: a TrainJob's trainer takes "
                f"only {', '.join(sorted(_TRAINER_FIELDS | _PATCHED_FIELDS - {'name'}))}"
            )
        trainer: dict[str, Any] = {"image": container["image"], "numNodes": run.spec.training.nodes}
        for source, target in (("command", "command"), ("args", "args"), ("env", "env"),
                               ("resources", "resourcesPerNode")):  # fmt: skip
            if container.get(source):
                trainer[target] = container[source]
        patch: dict[str, Any] = {
            key: pod[key] for key in sorted(_POD_FIELDS - {"containers", "restartPolicy",
                                                           "automountServiceAccountToken"})
            if key in pod
        }  # fmt: skip
        patch["containers"] = [
            {"name": NODE, **{k: container[k] for k in ("volumeMounts", "securityContext")
                              if k in container}}
        ]  # fmt: skip
        replicated = {
            "name": NODE,
            "template": {"spec": {"template": {"metadata": {"labels": run.labels},
                                               "spec": patch}}},
        }  # fmt: skip
        spec: dict[str, Any] = {
            "trainer": trainer,
            "runtimePatches": [
                {
                    "manager": MANAGER,
                    "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated]}}},
                }
            ],
        }
        user = run.spec.training.spec or {}
        if "runtimeRef" not in user:
            spec["runtimeRef"] = dict(DEFAULT_RUNTIME)
        if run.spec.training.active_deadline_seconds is not None:
            spec["activeDeadlineSeconds"] = run.spec.training.active_deadline_seconds
        return self.object(run, spec)

    def state(self, obj: dict[str, Any] | None) -> TrainerState:
        return condition_state(obj, succeeded="Complete")

    def report_pod(self, name: str, spec: LearningLoopSpec) -> ReportPod:
        labels = {
            "jobset.sigs.k8s.io/jobset-name": name,
            "jobset.sigs.k8s.io/replicatedjob-name": NODE,
            "jobset.sigs.k8s.io/job-index": "0",
            "batch.kubernetes.io/job-completion-index": "0",
        }
        return ReportPod(labels, NODE)
