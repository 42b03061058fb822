"""The trainer interface: what every kind of training object (a Job, a TrainJob, a
PyTorchJob, a RayJob) must do for the loop, and the parts they share.

A kind builds its object from the user's pod template plus ours (the data set's
location, the run's identity, the output directory), reads its state as Running,
Succeeded or Failed, and says which pod's termination message holds the trainer's
report (the rank-0, master or head pod). Adding a kind is one file and a line in the
factory (:mod:`afs.continuous.kube.training`).
"""

from __future__ import annotations

import copy
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import ValidationError

from afs.continuous.kube.api.privacy import RedactionSummary
from afs.continuous.kube.api.v1alpha1 import API_VERSION, DATA_DIR, LearningLoopSpec
from afs.continuous.kube.naming import dns_label, run_name

LABEL_LOOP = "continuous.afs.dev/loop"
LABEL_RUN = "continuous.afs.dev/run"
ANNOTATION_SHA256 = "continuous.afs.dev/dataset-sha256"
ANNOTATION_SAMPLES = "continuous.afs.dev/dataset-samples"
ANNOTATION_DATASET_ID = "continuous.afs.dev/dataset-id"
ANNOTATION_REDACTION = "continuous.afs.dev/dataset-redaction"
DATA_VOLUME = "afs-data"
OUTPUT_DIR = f"{DATA_DIR}/output"
TRAINING_SERVICE_ACCOUNT = "afs-continuous-training"
DATASET_FILE = "dataset.jsonl"


def run_labels(loop: str, run: int) -> dict[str, str]:
    """The labels of a run's objects (training object, ModelVersion, ABTest). A label
    value holds at most 63 characters and a loop's name up to 253: long names keep a
    hash suffix instead."""
    return {LABEL_LOOP: dns_label(loop), LABEL_RUN: str(run)}


@dataclass(frozen=True)
class ExportedDataset:
    """What the export of a distributed run produced (its exporter's report)."""

    sha256: str | None = None
    sample_count: int | None = None
    dataset_id: str | None = None
    """Where its membership is recorded in the usage database (``namespace/run``)."""
    redaction: RedactionSummary | None = None


@dataclass(frozen=True)
class RunContext:
    """Everything a kind needs to build one run's object."""

    loop: str
    namespace: str
    uid: str | None
    spec: LearningLoopSpec
    run: int
    since: datetime | None
    exporter_image: str
    dataset: ExportedDataset = ExportedDataset()

    @property
    def name(self) -> str:
        return run_name(self.loop, self.run)

    @property
    def labels(self) -> dict[str, str]:
        return run_labels(self.loop, self.run)

    def metadata(self, name: str | None = None) -> dict[str, Any]:
        """Named for the run (or ``name``), labelled, owned by the loop: deleting the loop
        deletes it, and an object of that name that names another owner is not ours."""
        metadata: dict[str, Any] = {
            "name": name or self.name, "namespace": self.namespace, "labels": self.labels,
        }  # fmt: skip
        annotations = {}
        if self.dataset.sha256 is not None:
            annotations[ANNOTATION_SHA256] = self.dataset.sha256
        if self.dataset.sample_count is not None:
            annotations[ANNOTATION_SAMPLES] = str(self.dataset.sample_count)
        if self.dataset.dataset_id is not None:
            annotations[ANNOTATION_DATASET_ID] = self.dataset.dataset_id
        if self.dataset.redaction is not None:
            annotations[ANNOTATION_REDACTION] = self.dataset.redaction.model_dump_json()
        if annotations:
            metadata["annotations"] = annotations
        if self.uid is not None:
            metadata["ownerReferences"] = [
                {
                    "apiVersion": API_VERSION,
                    "kind": "LearningLoop",
                    "name": self.loop,
                    "uid": self.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        return metadata

    def dataset_uri(self) -> str | None:
        """Where the export uploads the data set in object storage (None: not there)."""
        prefix = self.spec.dataset.storage_uri
        if prefix is None:
            return None
        return f"{prefix.rstrip('/')}/{self.name}/{DATASET_FILE}"


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def exported_dataset(report: dict[str, Any], *, expected_id: str | None = None) -> ExportedDataset:
    """The exporter's report (``sha256``, ``final_count``, ``dataset_id``, ``redaction``),
    each value kept only when it is what the status and the lineage accept: the message is
    a pod's, anyone's to write (a data set id is kept only when it is the run's own)."""
    sha256, count = report.get("sha256"), report.get("final_count")
    dataset_id = report.get("dataset_id")
    return ExportedDataset(
        sha256=sha256 if isinstance(sha256, str) and _SHA256.match(sha256) else None,
        sample_count=count
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None,
        dataset_id=dataset_id if dataset_id is not None and dataset_id == expected_id else None,
        redaction=_redaction_summary(report.get("redaction")),
    )  # fmt: skip


def _redaction_summary(value: Any) -> RedactionSummary | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    try:
        return RedactionSummary.model_validate(value)
    except ValidationError:
        return None


def recorded_dataset(obj: dict[str, Any] | None) -> ExportedDataset:
    """The data set's report as recorded on a training object (an operator restarted
    after creating it recovers it from there)."""
    metadata = (obj or {}).get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    samples = annotations.get(ANNOTATION_SAMPLES)
    own_id = f"{metadata.get('namespace')}/{metadata.get('name')}"
    return exported_dataset({
        "sha256": annotations.get(ANNOTATION_SHA256),
        "final_count": int(samples) if isinstance(samples, str) and samples.isdigit() else None,
        "dataset_id": annotations.get(ANNOTATION_DATASET_ID),
        "redaction": annotations.get(ANNOTATION_REDACTION),
    }, expected_id=own_id)  # fmt: skip


@dataclass(frozen=True)
class TrainerState:
    phase: Literal["Running", "Succeeded", "Failed", "Missing"]
    message: str = ""


@dataclass(frozen=True)
class ReportPod:
    """Which pods to list (all of ``labels``) and whose container's termination message
    is the report."""

    labels: dict[str, str]
    container: str


class Trainer(ABC):
    """One kind of training object."""

    kind: ClassVar[str]
    api_version: ClassVar[str]
    plural: ClassVar[str]
    engine: ClassVar[str]
    """What must be installed for the kind to exist (said when it is not)."""
    sealed: ClassVar[tuple[str, ...]] = ()
    """Paths of the spec the operator writes whole (pod templates): ``training.spec``
    may not set anything inside them (they would bypass the training policy)."""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def exports_first(self) -> bool:
        """Whether the data set is exported by a Job of its own before the object is
        created (every kind of several pods), rather than inside the object's pod."""
        return True

    @abstractmethod
    def build(self, run: RunContext) -> dict[str, Any]:
        """The object for ``run``; ValueError naming the field when the spec cannot be
        expressed in this kind."""

    @abstractmethod
    def state(self, obj: dict[str, Any] | None) -> TrainerState:
        """Where the object stands (``Missing`` when it is gone)."""

    @abstractmethod
    def report_pod(self, name: str, spec: LearningLoopSpec) -> ReportPod:
        """The pod (rank 0, master, head) whose trainer reports."""

    def object(self, run: RunContext, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec`` under our metadata, with ``training.spec`` merged in."""
        merged = merge_spec(run.spec.training.spec, spec, sealed=self.sealed)
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": run.metadata(),
            "spec": merged,
        }


def condition_state(
    obj: dict[str, Any] | None, *, succeeded: str, failed: str = "Failed"
) -> TrainerState:
    """The state from ``status.conditions`` as the Kubeflow kinds write them."""
    if obj is None:
        return TrainerState("Missing")
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        message = str(condition.get("message") or condition.get("reason") or "")
        if condition.get("type") == failed:
            return TrainerState("Failed", message)
        if condition.get("type") == succeeded:
            return TrainerState("Succeeded", message)
    return TrainerState("Running")


def merge_spec(
    user: dict[str, Any] | None, ours: dict[str, Any], *, sealed: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``user`` (``training.spec``) with ``ours`` merged in: objects merge key by key;
    a value both set, or anything inside a sealed path, is refused naming the field."""

    def merge(mine: dict[str, Any], theirs: dict[str, Any], path: str) -> dict[str, Any]:
        result = copy.deepcopy(theirs)
        for key, value in mine.items():
            here = f"{path}.{key}" if path else key
            if key not in result:
                result[key] = copy.deepcopy(value)
            elif isinstance(value, dict) and isinstance(result[key], dict) and (here not in sealed):
                result[key] = merge(value, result[key], here)
            else:
                raise ValueError(
                    f"training.spec.{here}: the operator sets this field (from "
                    "training.template, training.nodes and the run); remove it"
                )
        return result

    return merge(ours, user or {}, "")


def run_limits(run: RunContext) -> dict[str, int]:
    """``activeDeadlineSeconds`` and ``ttlSecondsAfterFinished`` from ``spec.training``,
    those that are set (the Job, PyTorchJob and RayJob fields have these names)."""
    training = run.spec.training
    limits = {
        "activeDeadlineSeconds": training.active_deadline_seconds,
        "ttlSecondsAfterFinished": training.ttl_seconds_after_finished,
    }
    return {key: value for key, value in limits.items() if value is not None}


def trainer_env(run: RunContext, *, in_pod_export: bool) -> list[dict[str, Any]]:
    """What the trainer is told: where the data set is (a path on the shared volume, or
    a URL in object storage, with its sha256 when known), where to put artefacts, and
    the run's name."""
    dataset = run.spec.dataset
    env = []
    uri = run.dataset_uri()
    if uri is not None and not in_pod_export:
        env.append({"name": "AFS_DATASET_URI", "value": uri})
    else:
        env.append({"name": "AFS_DATASET_PATH", "value": dataset.path})
    if run.dataset.sha256 is not None:
        env.append({"name": "AFS_DATASET_SHA256", "value": run.dataset.sha256})
    env += [
        {"name": "AFS_OUTPUT_DIR", "value": OUTPUT_DIR},
        {"name": "AFS_RUN_ID", "value": run.name},
    ]
    return env


def data_volume(run: RunContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume every training pod mounts at /data, and its mount: the run's own
    directory of the shared claim, else a scratch ``emptyDir`` (a Job's exporter writes
    there; with object storage it holds only the pod's output)."""
    dataset = run.spec.dataset
    mount: dict[str, Any] = {"name": DATA_VOLUME, "mountPath": DATA_DIR}
    if dataset.volume_claim is not None:
        volume = {"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": dataset.volume_claim}}
        mount["subPath"] = run.name
    else:
        volume = {"name": DATA_VOLUME, "emptyDir": {"sizeLimit": dataset.volume_size_limit}}
    return volume, mount


def trainer_pod_template(run: RunContext, *, in_pod_export: bool = False) -> dict[str, Any]:
    """The user's pod template with ours: the trainer (its first container) gets the
    environment and the data volume, the pod the run's labels and, unless the template
    names them, an account of its own with no API token (the trainer needs no API
    access, and the namespace's default account may have been granted rights)."""
    template = copy.deepcopy(run.spec.training.template)
    pod_spec = template.setdefault("spec", {})
    containers = pod_spec.get("containers") or []
    if not containers:  # the API refuses it; a model built without validation may not
        raise ValueError("spec.training.template.spec.containers must name the trainer")
    trainer = containers[0]
    trainer.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    trainer["env"] = [*trainer.get("env", []), *trainer_env(run, in_pod_export=in_pod_export)]
    volume, mount = data_volume(run)
    trainer["volumeMounts"] = [*trainer.get("volumeMounts", []), mount]
    pod_spec["volumes"] = [*pod_spec.get("volumes", []), volume]
    pod_spec.setdefault("automountServiceAccountToken", False)
    pod_spec.setdefault("serviceAccountName", TRAINING_SERVICE_ACCOUNT)
    template.setdefault("metadata", {}).setdefault("labels", {}).update(run.labels)
    return template
