"""What a finished run produced: the data set its exporter reported, and the
ModelVersion that records the trained model with its lineage."""

from __future__ import annotations

import json
from typing import Any

from afs.continuous.kube import planning
from afs.continuous.kube.api.v1alpha1 import (
    API_VERSION,
    CurrentRun,
    LearningLoopSpec,
    LearningLoopStatus,
)
from afs.continuous.kube.naming import run_name
from afs.continuous.kube.training import (
    ExportedDataset,
    Trainer,
    exported_dataset,
    recorded_dataset,
    run_labels,
)
from afs.continuous.kube.training.export import EXPORTER


def dataset_report(pods: list[dict[str, Any]], *, dataset_id: str) -> ExportedDataset:
    """The sample count and sha256 from the exporter's termination message, each when
    readable (a value the status or the lineage would refuse is left out)."""
    message = planning.trainer_message(pods, EXPORTER) or _init_message(pods)
    try:
        data = json.loads(message) if message else {}
    except json.JSONDecodeError:
        return ExportedDataset()
    return exported_dataset(data if isinstance(data, dict) else {}, expected_id=dataset_id)


def _init_message(pods: list[dict[str, Any]]) -> str | None:
    for pod in pods:
        for container in (pod.get("status") or {}).get("initContainerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if container.get("name") == EXPORTER and terminated.get("message"):
                return str(terminated["message"])
    return None


def run_dataset(
    trainer: Trainer,
    run: CurrentRun,
    obj: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    *,
    dataset_id: str,
) -> ExportedDataset:
    """The data set a finished run trained on: from the status, else from the training
    object's annotations (an operator restarted after creating it), else (a Job) from
    its exporter's termination message."""
    if run.dataset_sha256 is not None:
        return ExportedDataset(run.dataset_sha256, run.sample_count, run.dataset_id, run.redaction)
    if trainer.exports_first:
        return recorded_dataset(obj)
    return dataset_report(pods, dataset_id=dataset_id)


def model_version_manifest(
    loop: str,
    namespace: str,
    uid: str | None,
    spec: LearningLoopSpec,
    run: CurrentRun,
    report: planning.TrainerReport,
    dataset: ExportedDataset,
    status: LearningLoopStatus,
    kind: str,
) -> dict[str, Any]:
    lineage: dict[str, Any] = {"loop": loop, "run": run.number, "job": run.job}
    if kind != "Job":
        lineage["trainingKind"] = kind
    if dataset.sha256 is not None:
        lineage["datasetSha256"] = dataset.sha256
    if dataset.sample_count is not None:
        lineage["sampleCount"] = dataset.sample_count
    if dataset.dataset_id is not None:
        lineage["datasetId"] = dataset.dataset_id
    if dataset.redaction is not None:
        lineage["redaction"] = dataset.redaction.model_dump(by_alias=True, mode="json")
    parent = status.champion or (
        status.runs.recent[-1].model_version if status.runs.recent else None
    )
    if parent:
        lineage["parent"] = parent
    metadata: dict[str, Any] = {
        "name": run_name(loop, run.number),
        "namespace": namespace,
        "labels": run_labels(loop, run.number),
    }
    if uid is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": API_VERSION, "kind": "LearningLoop", "name": loop, "uid": uid}
        ]
    version: dict[str, Any] = {
        "model": spec.model.name,
        "version": f"run-{run.number}",
        "uri": report.model_uri,
        "metrics": report.metrics,
        "lineage": lineage,
    }
    if spec.serving is not None:  # deploy mode: the version runs as the loop says
        version["serving"] = spec.serving.model_dump(by_alias=True, mode="json", exclude_none=True)
    return {"apiVersion": API_VERSION, "kind": "ModelVersion", "metadata": metadata,
            "spec": version}  # fmt: skip
