"""A LearningLoop with each distributed kind, end to end: the real kopf and ``kubernetes``
client against the Kubernetes emulator, usage records in a real PostgreSQL. The tests
stand in for the engines' controllers and the kubelet: they finish the export Job and
the training object, and give the pods their termination messages."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import kmock
import pytest

from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec
from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.training import ExportedDataset, RunContext, trainer_for
from tests.kube.emulator import ApiServerEmulator
from tests.kube.pods import restricted
from tests.kube.test_operator_scenarios import (
    NAMESPACE,
    _call,
    _event_reasons,
    _eventually,
    _get_custom,
    _job_status,
    _loop,
    _loop_manifest,
    _pruned_in_a_cluster,
    _register,
    _setup,
    failed_runs_in_a_row,
    operator,
    usage_db as usage_db,  # a fixture: re-exported
)

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(120)]
KINDS = ["TrainJob", "PyTorchJob", "RayJob"]
SHA = "cd" * 32
EXPORT = "nayru-run-1-export"
REPORT = json.dumps({"modelUri": "s3://models/nayru/run-1", "metrics": {"loss": 0.125}})
#: what each engine writes when its run ends, and which way
FINISHED = {
    "TrainJob": (
        {"conditions": [{"type": "Complete", "status": "True", "reason": "JobsCompleted",
                         "message": "", "lastTransitionTime": "2026-12-01T00:00:00Z"}]},
        {"conditions": [{"type": "Failed", "status": "True", "reason": "JobsFailed",
                         "message": "node-0 was OOMKilled",
                         "lastTransitionTime": "2026-12-01T00:00:00Z"}]},
    ),
    "PyTorchJob": (
        {"conditions": [{"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"}]},
        {"conditions": [{"type": "Failed", "status": "True", "reason": "PyTorchJobFailed",
                         "message": "node-0 was OOMKilled"}]},
    ),
    "RayJob": (
        {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
        {"jobDeploymentStatus": "Complete", "jobStatus": "FAILED",
         "message": "node-0 was OOMKilled"},
    ),
}  # fmt: skip


def _register_kind(emulator: kmock.KubernetesEmulator, kind: str) -> None:
    _register(emulator)
    trainer = trainer_for(kind)
    info = emulator.resources[f"{trainer.api_version}/{trainer.plural}"]
    info.kind, info.namespaced = kind, True
    info.verbs = {"list", "watch", "get", "create", "patch", "update", "delete"}
    info.subresources = {"status"}


def _manifest(kind: str) -> dict[str, Any]:
    name = "pytorch" if kind == "PyTorchJob" else "trainer"
    return _loop_manifest(
        dataset={"volumeClaim": "shared-data", "minUserFeedback": None},
        training={
            "kind": kind, "nodes": 2,
            "template": restricted(
                {"name": name, "image": "trainer:1", "command": ["python", "train.py"]}),
        },
    )  # fmt: skip


def _pod(name: str, labels: dict[str, str], container: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels,
                     "resourceVersion": "1"},
        "spec": {"containers": [{"name": container, "image": "x"}]},
        "status": {"containerStatuses": [
            {"name": container, "image": "x", "imageID": "x", "ready": False, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "message": message}}}]},
    }  # fmt: skip


def _finish_export(kube: KubeClient, *, succeeded: bool = True) -> None:
    """The Job controller and the kubelet: the export ran, its pod reported."""
    kube.batch.patch_namespaced_job_status(
        EXPORT, NAMESPACE, {"status": _job_status(succeeded=succeeded)}
    )
    report = json.dumps({"final_count": 30, "sha256": SHA})
    pod = _pod(f"{EXPORT}-x1", {"job-name": EXPORT}, "export-dataset", report)
    kube.core.create_namespaced_pod(NAMESPACE, pod)


def _finish_training(kube: KubeClient, kind: str, *, succeeded: bool) -> None:
    """The engine: the run ended; its rank-0 pod reported (when it succeeded)."""
    trainer = trainer_for(kind)
    status = FINISHED[kind][0 if succeeded else 1]
    kube.custom.patch_namespaced_custom_object_status(
        trainer.group, trainer.version, NAMESPACE, trainer.plural, "nayru-run-1",
        {"status": status},
    )  # fmt: skip
    if succeeded:
        spec = LearningLoopSpec.model_validate(_manifest(kind)["spec"])
        where = trainer.report_pod("nayru-run-1", spec)
        kube.core.create_namespaced_pod(NAMESPACE, _pod("rank-0", where.labels, where.container,
                                                        REPORT))  # fmt: skip


def _training_object(kube: KubeClient, kind: str) -> dict[str, Any] | None:
    trainer = trainer_for(kind)
    return kube.get_object(
        group=trainer.group, version=trainer.version, plural=trainer.plural,
        namespace=NAMESPACE, name="nayru-run-1",
    )  # fmt: skip


def _condition(kube: KubeClient, reason: str) -> dict[str, Any] | None:
    conditions = (_loop(kube).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["reason"] == reason), None)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_distributed_run_exports_once_trains_and_records_a_model_version(
    kmock: kmock.KubernetesEmulator, usage_db: str, kind: str
) -> None:
    _register_kind(kmock, kind)
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, _manifest(kind))
        export = await _eventually(lambda: kube.get_job(NAMESPACE, EXPORT))
        [exporter] = export["spec"]["template"]["spec"]["containers"]
        assert exporter["name"] == "export-dataset"
        run = await _eventually(lambda: (_loop(kube).get("status") or {}).get("currentRun"))
        assert (run["job"], run["kind"], run["phase"]) == ("nayru-run-1", kind, "Exporting")
        await asyncio.sleep(0.5)  # while the export runs, nothing else starts
        assert await _call(_training_object, kube, kind) is None

        await _call(_finish_export, kube)
        obj = await _eventually(lambda: _training_object(kube, kind))
        assert obj["metadata"]["annotations"]["continuous.afs.dev/dataset-sha256"] == SHA
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "loop-uid-1"
        run = await _eventually(
            lambda: (
                (r := (_loop(kube).get("status") or {}).get("currentRun") or {}).get("phase")
                == "Training"
                and r
            )
        )
        assert (run["datasetSha256"], run["sampleCount"]) == (SHA, 30)

        await _call(lambda: _finish_training(kube, kind, succeeded=True))
        version = await _eventually(lambda: _get_custom(kube, "modelversions", "nayru-run-1"))
        assert version["spec"]["uri"] == "s3://models/nayru/run-1"
        assert version["spec"]["metrics"] == {"loss": 0.125}
        assert version["spec"]["lineage"] == {
            "loop": "nayru", "run": 1, "job": "nayru-run-1", "trainingKind": kind,
            "datasetSha256": SHA, "sampleCount": 30,
        }  # fmt: skip
        status = await _eventually(
            lambda: (s := _loop(kube).get("status") or {}).get("runs", {}).get("succeeded") and s
        )
        assert status.get("currentRun") is None
        assert await _call(_pruned_in_a_cluster, kube) == []
        await _eventually(
            lambda: {"RunStarted", "TrainingStarted", "RunSucceeded"} <= _event_reasons(kmock)
        )


async def test_an_operator_restarted_after_creating_the_training_object_adopts_it(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    """The previous operator saw the export finish, created the PyTorchJob and died before
    recording it: the next one adopts that object (no second one) and takes the data
    set's hash from its annotations."""
    kind = "PyTorchJob"
    _register_kind(kmock, kind)
    manifest = _manifest(kind)
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, manifest)
        await _eventually(lambda: kube.get_job(NAMESPACE, EXPORT))
        await _eventually(lambda: (_loop(kube).get("status") or {}).get("currentRun"))
    # no operator runs while the export finishes and the old one creates the object
    kube = KubeClient.connect(host=str(kmock.url).rstrip("/"))
    await _call(_finish_export, kube)
    context = RunContext(
        loop="nayru", namespace=NAMESPACE, uid="loop-uid-1",
        spec=LearningLoopSpec.model_validate(manifest["spec"]), run=1, since=None,
        exporter_image="afs:1", dataset=ExportedDataset(SHA, 30),
    )  # fmt: skip
    orphan = trainer_for(kind).build(context)
    orphan["metadata"]["annotations"]["created-by"] = "the operator that died"
    trainer = trainer_for(kind)
    await _call(
        kube.custom.create_namespaced_custom_object, trainer.group, trainer.version, NAMESPACE,
        trainer.plural, copy.deepcopy(orphan),
    )  # fmt: skip
    async with operator(kmock) as kube:
        await _eventually(
            lambda: (
                ((_loop(kube).get("status") or {}).get("currentRun") or {}).get("phase")
                == "Training"
            )
        )
        await _call(lambda: _finish_training(kube, kind, succeeded=True))
        version = await _eventually(lambda: _get_custom(kube, "modelversions", "nayru-run-1"))
        assert version["spec"]["lineage"]["datasetSha256"] == SHA
        assert version["spec"]["lineage"]["sampleCount"] == 30
        listing = await _call(
            kube.custom.list_namespaced_custom_object, trainer.group, trainer.version,
            NAMESPACE, trainer.plural,
        )  # fmt: skip
        [only] = listing["items"]
        assert only["metadata"]["annotations"]["created-by"] == "the operator that died"


@pytest.mark.parametrize("stage", ["export", "training"])
async def test_a_failed_distributed_run_is_recorded_and_backs_off(
    kmock: kmock.KubernetesEmulator, usage_db: str, stage: str
) -> None:
    kind = "RayJob"
    _register_kind(kmock, kind)
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, _manifest(kind))
        await _eventually(lambda: kube.get_job(NAMESPACE, EXPORT))
        if stage == "export":
            await _call(lambda: _finish_export(kube, succeeded=False))
            why = f"data set export (Job {EXPORT}) failed"
        else:
            await _call(_finish_export, kube)
            await _eventually(lambda: _training_object(kube, kind))
            await _call(lambda: _finish_training(kube, kind, succeeded=False))
            why = "RayJob failed: node-0 was OOMKilled"
        status = await _eventually(
            lambda: (s := _loop(kube).get("status") or {}).get("runs", {}).get("failed") and s
        )
        [last] = [c for c in status["conditions"] if c["type"] == "LastRunSucceeded"]
        assert (last["status"], last["message"]) == ("False", f"run 1: {why}")
        await asyncio.sleep(1.5)  # several checks later: backing off, no second run
        assert await _call(kube.get_job, NAMESPACE, "nayru-run-2-export") is None
        if stage == "export":
            assert await _call(_training_object, kube, kind) is None
    assert failed_runs_in_a_row(usage_db) == 1


async def test_a_kind_the_cluster_does_not_serve_is_a_condition_and_nothing_starts(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    _register(kmock)  # KubeRay is not installed
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, _manifest("RayJob"))
        condition = await _eventually(lambda: _condition(kube, "TrainerKindUnavailable"))
        assert condition["type"] == "Ready" and condition["status"] == "False"
        assert condition["message"].startswith(
            "training.kind RayJob: the cluster does not serve rayjobs.ray.io (install KubeRay"
        )
        await asyncio.sleep(1.0)  # several checks: still no export for nothing
        assert await _call(kube.get_job, NAMESPACE, EXPORT) is None
        assert (await _call(_loop, kube))["status"].get("currentRun") is None
        await _eventually(lambda: "TrainerKindUnavailable" in _event_reasons(kmock))
