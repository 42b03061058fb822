"""The training Job of a run, built by a pure function tests can inspect.

The trainer contract (see docs/operator.md): an init container running afs-continuous
exports the run's data set to a shared volume; the user's trainer container (the first
container of ``spec.training.template``) gets ``AFS_DATASET_PATH``, ``AFS_OUTPUT_DIR``
and ``AFS_RUN_ID``, trains, and reports ``{"modelUri": "...", "metrics": {...}}`` as its
termination message (written to /dev/termination-log).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from afs.continuous import __version__
from afs.continuous.kube.api.v1alpha1 import API_VERSION, LearningLoopSpec
from afs.continuous.kube.naming import dns_label, run_name
from afs.continuous.timeutil import format_timestamp

DEFAULT_EXPORTER_IMAGE = f"ghcr.io/afs-continuous/afs-continuous:{__version__}"
LABEL_LOOP = "continuous.afs.dev/loop"
LABEL_RUN = "continuous.afs.dev/run"


def run_labels(loop: str, run: int) -> dict[str, str]:
    """The labels of a run's Job, ModelVersion and ABTest. A label value holds at most 63
    characters and a loop's name up to 253: long names keep a hash suffix instead."""
    return {LABEL_LOOP: dns_label(loop), LABEL_RUN: str(run)}


#: the Pod Security "restricted" profile, which the exporter meets
EXPORTER_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
DATA_VOLUME = "afs-data"
EXPORTER_TMP_VOLUME = "afs-export-tmp"
"""The exporter's /tmp: its root file system is read-only."""
OUTPUT_DIR = "/data/output"
TRAINING_SERVICE_ACCOUNT = "afs-continuous-training"


def export_command(spec: LearningLoopSpec, since: datetime | None) -> list[str]:
    """The init container's command: export exactly what the trigger counted."""
    dataset = spec.dataset
    command = [
        "afs-continuous", "export", dataset.path, "--json", "--no-existing",
        "--report", "/dev/termination-log",
        f"--model={spec.model.name}",  # one word: a name such as "--db=x" stays a value
        "--min-quality", str(dataset.min_quality_score),
        "--min-feedback",
        "none" if dataset.min_user_feedback is None else str(dataset.min_user_feedback),
        "--format", dataset.format_type,
    ]  # fmt: skip
    if spec.model.expert is not None:
        command.append(f"--expert={spec.model.expert}")
    if not dataset.deduplicate:
        command.append("--no-dedupe")
    if dataset.max_samples is not None:
        command += ["--max-samples", str(dataset.max_samples)]
    if since is not None:
        command += ["--since", format_timestamp(since)]
    return command


def training_service_account(namespace: str) -> dict[str, Any]:
    """The account the training pods of ``namespace`` run as when their template names
    none: no rights granted to it, and no token mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": TRAINING_SERVICE_ACCOUNT,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "afs-continuous"},
        },
        "automountServiceAccountToken": False,
    }


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
    """The Job manifest for run ``run`` of ``loop`` (owned by the loop, named for the run)."""
    name = run_name(loop, run)
    labels = run_labels(loop, run)
    template = copy.deepcopy(spec.training.template)
    pod_spec = template.setdefault("spec", {})
    containers = pod_spec.get("containers") or []
    if not containers:
        raise ValueError("spec.training.template.spec.containers must name the trainer")
    trainer = containers[0]
    trainer.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    trainer["env"] = [
        *trainer.get("env", []),
        {"name": "AFS_DATASET_PATH", "value": spec.dataset.path},
        {"name": "AFS_OUTPUT_DIR", "value": OUTPUT_DIR},
        {"name": "AFS_RUN_ID", "value": name},
    ]
    mount = {"name": DATA_VOLUME, "mountPath": "/data"}
    trainer["volumeMounts"] = [*trainer.get("volumeMounts", []), mount]
    secret = spec.database.url_secret_ref
    exporter = {
        "name": "export-dataset",
        "image": spec.training.exporter_image or exporter_image,
        "command": export_command(spec, since),
        "env": [
            {
                "name": "AFS_DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            }
        ],
        "volumeMounts": [mount, {"name": EXPORTER_TMP_VOLUME, "mountPath": "/tmp"}],
        "securityContext": EXPORTER_SECURITY,
    }
    pod_spec["initContainers"] = [exporter, *pod_spec.get("initContainers", [])]
    # the trainer needs no API access: no token unless the template asks for one, and an
    # account of its own rather than the namespace's default (which others may have
    # granted rights to), unless the template names one
    pod_spec.setdefault("automountServiceAccountToken", False)
    pod_spec.setdefault("serviceAccountName", TRAINING_SERVICE_ACCOUNT)
    pod_spec["volumes"] = [
        *pod_spec.get("volumes", []),
        {"name": DATA_VOLUME, "emptyDir": {"sizeLimit": spec.dataset.volume_size_limit}},
        {"name": EXPORTER_TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    pod_spec.setdefault("restartPolicy", "Never")
    template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.training.backoff_limit,
        "template": template,
    }
    if spec.training.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.training.active_deadline_seconds
    if spec.training.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.training.ttl_seconds_after_finished
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if uid is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": "LearningLoop",
                "name": loop,
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
