"""``kubeflow.org/v1`` PyTorchJob (Kubeflow Training Operator): a master and
``nodes − 1`` workers from the same pod template; the master's ``pytorch`` container
reports. Its pods are kept after the run (``cleanPodPolicy: None``) so that the report
can be read."""

from __future__ import annotations

import copy
from typing import Any

from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec
from afs.continuous.kube.training.base import (
    ReportPod,
    RunContext,
    Trainer,
    TrainerState,
    condition_state,
    run_limits,
    trainer_pod_template,
)

#: the container the training operator runs (and the trainer must be)
CONTAINER = "pytorch"


class PyTorchJobTrainer(Trainer):
    kind = "PyTorchJob"
    api_version = "kubeflow.org/v1"
    plural = "pytorchjobs"
    engine = "the Kubeflow Training Operator (kubeflow.org/v1)"
    sealed = ("pytorchReplicaSpecs",)

    def build(self, run: RunContext) -> dict[str, Any]:
        template = trainer_pod_template(run)
        # the replica's restartPolicy is the one the training operator applies
        template["spec"].pop("restartPolicy", None)
        replicas = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template}}
        workers = run.spec.training.nodes - 1
        if workers:
            replicas["Worker"] = {
                "replicas": workers, "restartPolicy": "Never", "template": copy.deepcopy(template),
            }  # fmt: skip
        training = run.spec.training
        policy: dict[str, Any] = {"backoffLimit": training.backoff_limit, "cleanPodPolicy": "None"}
        policy.update(run_limits(run))
        return self.object(run, {"pytorchReplicaSpecs": replicas, "runPolicy": policy})

    def state(self, obj: dict[str, Any] | None) -> TrainerState:
        return condition_state(obj, succeeded="Succeeded")

    def report_pod(self, name: str, spec: LearningLoopSpec) -> ReportPod:
        labels = {
            "training.kubeflow.org/job-name": name,
            "training.kubeflow.org/job-role": "master",
        }
        return ReportPod(labels, CONTAINER)
