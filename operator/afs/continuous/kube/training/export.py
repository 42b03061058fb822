"""The data set's export: the container that writes it (afs-continuous itself), in a
Job's pod for the one-pod kind, or in an export Job of its own that runs once before the
pods of a distributed run start (they all read what it wrote, from the shared claim or
from object storage).

The exporter reports ``{"final_count": …, "sha256": …, "dataset_id": …, "redaction": …}``
as its termination message; the operator records them in the run's status and its
ModelVersion's lineage. The data set's membership is recorded in the usage database under
``<namespace>/<run>``, the ModelVersion's own name, so ``afs-continuous forget`` can name
(and label) the versions trained on a user's records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from afs.continuous import __version__
from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec
from afs.continuous.kube.naming import dns_label
from afs.continuous.kube.training.base import (
    TRAINING_SERVICE_ACCOUNT,
    RunContext,
    data_volume,
    run_limits,
)
from afs.continuous.scoring.factory import JUDGE_KEY_ENV
from afs.continuous.timeutil import format_timestamp

DEFAULT_EXPORTER_IMAGE = f"ghcr.io/afs-continuous/afs-continuous:{__version__}"
EXPORTER = "export-dataset"
#: the Pod Security "restricted" profile, which the exporter meets
EXPORTER_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
EXPORTER_TMP_VOLUME = "afs-export-tmp"
"""The exporter's /tmp: its root file system is read-only."""
#: an export that fails (the database restarting, say) is tried again this many times
EXPORT_BACKOFF_LIMIT = 2


def export_job_name(run: RunContext) -> str:
    return dns_label(f"{run.name}-export")


GOLDEN_VOLUME = "afs-golden-set"
GOLDEN_DIR = "/golden"
#: where the exporter finds the redaction's hash key (from keySecretRef)
REDACTION_KEY_ENV = "AFS_REDACTION_KEY"


def export_command(
    spec: LearningLoopSpec,
    since: datetime | None,
    *,
    upload: str | None = None,
    dataset_id: str | None = None,
) -> list[str]:
    """The exporter's command: export exactly what the trigger counted, redacted as the
    loop says; ``dataset_id`` (``namespace/run``) names the data set and its version."""
    dataset = spec.dataset
    command = [
        "afs-continuous", "export", dataset.path, "--json", "--no-existing", "--parents",
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
    if upload is not None:
        command.append(f"--upload={upload}")
    redaction = dataset.redaction
    if redaction.enabled:
        command += ["--redact", f"--redact-operator={redaction.operator}"]
        if redaction.entities is not None:
            command.append(f"--redact-entities={','.join(redaction.entities)}")
    if spec.split is not None:
        command.append("--split=" + ",".join(f"{part:g}" for part in spec.split))
    golden = golden_set_path(spec)
    if golden is not None:
        command.append(f"--golden={golden}")
    if spec.scoring is not None:
        command.append(f"--score={spec.scoring.spec()}")
    if dataset_id is not None:
        command += [f"--dataset-id={dataset_id}", f"--model-version={dataset_id}"]
    return command


def golden_set_path(spec: LearningLoopSpec) -> str | None:
    """Where the golden set is mounted in the exporter's and the evaluator's pods."""
    if spec.evaluation is None or spec.evaluation.golden_set is None:
        return None
    return f"{GOLDEN_DIR}/{spec.evaluation.golden_set.config_map_ref.key}"


def golden_set_volume(spec: LearningLoopSpec) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The golden set's ConfigMap as a read-only volume, and its mount (None: no set)."""
    if spec.evaluation is None or spec.evaluation.golden_set is None:
        return None
    ref = spec.evaluation.golden_set.config_map_ref
    volume = {
        "name": GOLDEN_VOLUME,
        "configMap": {"name": ref.name, "items": [{"key": ref.key, "path": ref.key}]},
    }
    return volume, {"name": GOLDEN_VOLUME, "mountPath": GOLDEN_DIR, "readOnly": True}


def exporter_volumes(run: RunContext) -> list[dict[str, Any]]:
    """The volumes the exporter needs besides the data volume: its /tmp, the golden set."""
    golden = golden_set_volume(run.spec)
    return [exporter_tmp_volume(), *([golden[0]] if golden else [])]


def exporter_container(run: RunContext) -> dict[str, Any]:
    """The exporter, reading the loop's database, writing to the data volume at /data
    (and uploading to object storage when the loop names it)."""
    spec = run.spec
    secret = spec.database.url_secret_ref
    _, mount = data_volume(run)
    container: dict[str, Any] = {
        "name": EXPORTER,
        "image": spec.training.exporter_image or run.exporter_image,
        "command": export_command(
            spec, run.since, upload=run.dataset_uri(), dataset_id=f"{run.namespace}/{run.name}"
        ),
        "env": [
            {
                "name": "AFS_DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            }
        ],
        "volumeMounts": [mount, {"name": EXPORTER_TMP_VOLUME, "mountPath": "/tmp"}]
        + ([golden[1]] if (golden := golden_set_volume(spec)) else []),
        "securityContext": EXPORTER_SECURITY,
    }
    key = spec.dataset.redaction.key_secret_ref
    if spec.dataset.redaction.enabled and key is not None:
        container["env"].append({
            "name": REDACTION_KEY_ENV,
            "valueFrom": {"secretKeyRef": {"name": key.name, "key": key.key}},
        })  # fmt: skip
    judge = spec.scoring.judge if spec.scoring is not None else None
    if judge is not None and judge.api_key_secret_ref is not None:
        ref = judge.api_key_secret_ref
        container["env"].append({
            "name": JUDGE_KEY_ENV,
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        })  # fmt: skip
    credentials = spec.dataset.credentials_secret_ref
    if credentials is not None:
        container["envFrom"] = [{"secretRef": {"name": credentials.name}}]
    return container


def exporter_tmp_volume() -> dict[str, Any]:
    return {"name": EXPORTER_TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}}


def export_job(run: RunContext) -> dict[str, Any]:
    """The Job that exports a distributed run's data set once, before its pods start."""
    job_spec: dict[str, Any] = {
        "backoffLimit": EXPORT_BACKOFF_LIMIT,
        "template": {
            "metadata": {"labels": run.labels},
            "spec": {
                "containers": [exporter_container(run)],
                "volumes": [data_volume(run)[0], *exporter_volumes(run)],
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "serviceAccountName": TRAINING_SERVICE_ACCOUNT,
            },
        },
    }
    job_spec.update(run_limits(run))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": run.metadata(export_job_name(run)),
        "spec": job_spec,
    }


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
