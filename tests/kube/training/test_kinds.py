"""Each distributed kind's object, checked against the fields its project documents, and
how the operator reads its state and finds its report."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec
from afs.continuous.kube.training import ExportedDataset, RunContext, exported_dataset, trainer_for
from afs.continuous.kube.training.export import export_job
from afs.continuous.kube.training.ray_job import submit_script
from tests.kube.training.projects import (
    PYTORCH_JOB,
    RAY_JOB,
    train_job_dropped,
    unknown_fields,
)

SHA = "ab" * 32
DISTRIBUTED = ["TrainJob", "PyTorchJob", "RayJob"]


def _spec(kind: str, *, where: dict[str, Any] | None = None, **training: Any) -> LearningLoopSpec:
    container = {
        "name": "pytorch", "image": "registry.example.com/trainer:1",
        "command": ["python", "train.py"], "args": ["--epochs", "3"],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
    }  # fmt: skip
    return LearningLoopSpec.model_validate(
        {
            "model": {"name": "nayru-v1"},
            "database": {"urlSecretRef": {"name": "usage-db", "key": "url"}},
            "dataset": where if where is not None else {"volumeClaim": "shared-data"},
            "training": {"kind": kind, "nodes": 3,
                         "template": {"spec": {"containers": [container]}}, **training},
        }
    )  # fmt: skip


def _build(spec: LearningLoopSpec, *, dataset: ExportedDataset | None = None) -> dict[str, Any]:
    context = RunContext(
        loop="nayru", namespace="ml", uid="loop-uid", spec=spec, run=4, since=None,
        exporter_image="afs:1", dataset=dataset or ExportedDataset(SHA, 120),
    )  # fmt: skip
    return trainer_for(spec.training.kind).build(context)


def _unknown(obj: dict[str, Any]) -> object:
    if obj["kind"] == "TrainJob":
        return train_job_dropped(obj)
    return unknown_fields(obj["spec"], {"PyTorchJob": PYTORCH_JOB, "RayJob": RAY_JOB}[obj["kind"]])


def _pods(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates (or, for a TrainJob, the runtime patch) every training pod gets."""
    spec = obj["spec"]
    if obj["kind"] == "PyTorchJob":
        return [replica["template"] for replica in spec["pytorchReplicaSpecs"].values()]
    if obj["kind"] == "RayJob":
        cluster = spec["rayClusterSpec"]
        return [cluster["headGroupSpec"]["template"],
                *[group["template"] for group in cluster["workerGroupSpecs"]]]  # fmt: skip
    [patch] = spec["runtimePatches"]
    [job] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return [job["template"]["spec"]["template"]]


def _trainer_env(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "TrainJob":
        env = obj["spec"]["trainer"]["env"]
    else:
        env = _pods(obj)[0]["spec"]["containers"][0]["env"]
    return {item["name"]: item["value"] for item in env}


@pytest.mark.parametrize("kind", DISTRIBUTED)
@pytest.mark.parametrize(
    "where",
    [{"volumeClaim": "shared-data"}, {"storageUri": "s3://models/datasets"}],
    ids=["claim", "object-storage"],
)
def test_every_field_is_one_the_engine_documents(kind: str, where: dict[str, Any]) -> None:
    obj = _build(_spec(kind, where=where))
    assert _unknown(obj) in ([], {})
    assert (obj["apiVersion"], obj["kind"]) == (
        trainer_for(kind).api_version, kind,
    )  # fmt: skip


def test_the_checks_catch_a_field_the_engines_do_not_have() -> None:
    for kind in DISTRIBUTED:
        obj = _build(_spec(kind))
        obj["spec"]["colour"] = "blue"
        assert _unknown(obj) not in ([], {}), kind


@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_the_run_is_named_owned_and_remembers_its_data_set(kind: str) -> None:
    metadata = _build(_spec(kind))["metadata"]
    assert metadata["name"] == "nayru-run-4"
    assert metadata["labels"] == {"continuous.afs.dev/loop": "nayru", "continuous.afs.dev/run": "4"}
    assert metadata["annotations"] == {
        "continuous.afs.dev/dataset-sha256": SHA, "continuous.afs.dev/dataset-samples": "120",
    }  # fmt: skip
    [owner] = metadata["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("LearningLoop", "loop-uid", True)


@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_every_pod_mounts_the_run_s_directory_of_the_shared_claim(kind: str) -> None:
    obj = _build(_spec(kind))
    for pod in _pods(obj):
        assert {"name": "afs-data", "persistentVolumeClaim": {"claimName": "shared-data"}} in (
            pod["spec"]["volumes"]
        )
        [mount] = [m for m in pod["spec"]["containers"][0]["volumeMounts"]
                   if m["name"] == "afs-data"]  # fmt: skip
        assert mount == {"name": "afs-data", "mountPath": "/data", "subPath": "nayru-run-4"}
    assert _trainer_env(obj) == {
        "AFS_DATASET_PATH": "/data/dataset.jsonl", "AFS_DATASET_SHA256": SHA,
        "AFS_OUTPUT_DIR": "/data/output", "AFS_RUN_ID": "nayru-run-4",
    }  # fmt: skip


@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_with_object_storage_the_trainer_gets_the_data_set_s_url(kind: str) -> None:
    obj = _build(_spec(kind, where={"storageUri": "gs://models/datasets/"}))
    env = _trainer_env(obj)
    assert env["AFS_DATASET_URI"] == "gs://models/datasets/nayru-run-4/dataset.jsonl"
    assert "AFS_DATASET_PATH" not in env and env["AFS_DATASET_SHA256"] == SHA


@pytest.mark.parametrize(
    ("kind", "count"),
    [
        ("PyTorchJob", lambda s: (s["pytorchReplicaSpecs"]["Master"]["replicas"],
                                  s["pytorchReplicaSpecs"]["Worker"]["replicas"])),
        ("RayJob", lambda s: (1, s["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"])),
        ("TrainJob", lambda s: (1, s["trainer"]["numNodes"] - 1)),
    ],
)  # fmt: skip
def test_nodes_is_the_number_of_pods_that_train(kind: str, count: Any) -> None:
    assert count(_build(_spec(kind))["spec"]) == (1, 2)


def test_one_node_has_no_workers() -> None:
    pytorch = _build(_spec("PyTorchJob", nodes=1))["spec"]["pytorchReplicaSpecs"]
    assert set(pytorch) == {"Master"}
    assert "workerGroupSpecs" not in _build(_spec("RayJob", nodes=1))["spec"]["rayClusterSpec"]


def test_a_pytorch_job_keeps_its_pods_for_the_report_and_never_restarts_them() -> None:
    spec = _build(_spec("PyTorchJob", backoffLimit=2, activeDeadlineSeconds=600))["spec"]
    assert spec["runPolicy"] == {
        "backoffLimit": 2, "cleanPodPolicy": "None", "activeDeadlineSeconds": 600,
        "ttlSecondsAfterFinished": 86400,
    }  # fmt: skip
    for replica in spec["pytorchReplicaSpecs"].values():
        assert replica["restartPolicy"] == "Never"
        assert "restartPolicy" not in replica["template"]["spec"]


def test_a_train_job_takes_the_trainer_from_the_template_and_the_default_runtime() -> None:
    spec = _build(_spec("TrainJob"))["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime"}
    trainer = spec["trainer"]
    assert trainer["image"] == "registry.example.com/trainer:1"
    assert (trainer["command"], trainer["args"]) == (["python", "train.py"], ["--epochs", "3"])
    assert trainer["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": 1}}
    [patch] = spec["runtimePatches"]
    assert patch["manager"] == "continuous.afs.dev/operator"


def test_a_ray_job_runs_the_trainer_s_command_as_its_entrypoint() -> None:
    spec = _build(_spec("RayJob"))["spec"]
    assert spec["entrypoint"] == "python train.py --epochs 3"
    assert (spec["submissionMode"], spec["shutdownAfterJobFinishes"]) == ("K8sJobMode", True)
    for pod in _pods({"kind": "RayJob", "spec": spec}):
        assert "command" not in pod["spec"]["containers"][0]  # KubeRay starts Ray there


@pytest.mark.parametrize(
    ("kind", "extra", "found", "expected"),
    [
        ("TrainJob", {"runtimeRef": {"name": "deepspeed"}}, lambda s: s["runtimeRef"],
         {"name": "deepspeed"}),
        ("TrainJob", {"trainer": {"numProcPerNode": 4}},
         lambda s: (s["trainer"]["numProcPerNode"], s["trainer"]["numNodes"]), (4, 3)),
        ("PyTorchJob", {"nprocPerNode": "gpu"}, lambda s: s["nprocPerNode"], "gpu"),
        ("RayJob", {"rayClusterSpec": {"rayVersion": "2.46.0"}},
         lambda s: (s["rayClusterSpec"]["rayVersion"], "headGroupSpec" in s["rayClusterSpec"]),
         ("2.46.0", True)),
    ],
    ids=["runtime", "procs-per-node", "nproc", "ray-version"],
)  # fmt: skip
def test_training_spec_adds_the_kind_s_own_fields(
    kind: str, extra: dict[str, Any], found: Any, expected: object
) -> None:
    assert found(_build(_spec(kind, spec=extra))["spec"]) == expected


@pytest.mark.parametrize(
    ("kind", "extra", "field"),
    [
        ("PyTorchJob", {"runPolicy": {"cleanPodPolicy": "All"}}, "runPolicy.cleanPodPolicy"),
        ("TrainJob", {"trainer": {"image": "other:1"}}, "trainer.image"),
        ("RayJob", {"entrypoint": "python other.py"}, "entrypoint"),
        # inside a pod template: it would escape the training policy
        ("RayJob", {"rayClusterSpec": {"headGroupSpec": {"template": {"spec": {"hostPID": True}}}}},
         "rayClusterSpec.headGroupSpec"),
        ("PyTorchJob", {"pytorchReplicaSpecs": {"Worker": {"replicas": 9}}},
         "pytorchReplicaSpecs"),
    ],
    ids=["clean-pod-policy", "trainer-image", "entrypoint", "ray-head-template", "replicas"],
)  # fmt: skip
def test_training_spec_may_not_set_what_the_operator_sets(
    kind: str, extra: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=f"^training.spec.{field}: the operator sets this field"):
        _build(_spec(kind, spec=extra))


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("RayJob", {"command": None, "args": None},
         "training.template.spec.containers.0.command: a RayJob's entrypoint"),
        ("TrainJob", {"ports": [{"containerPort": 80}]},
         "training.template.spec.containers.0.ports: a TrainJob's trainer takes only"),
    ],
    ids=["ray-without-command", "train-job-port"],
)  # fmt: skip
def test_a_template_the_kind_cannot_express_is_refused(
    kind: str, change: dict[str, Any], message: str
) -> None:
    spec = _spec(kind)
    template = copy.deepcopy(spec.training.template)
    container = template["spec"]["containers"][0]
    for key, value in change.items():
        if value is None:
            container.pop(key)
        else:
            container[key] = value
    changed = spec.model_copy(
        update={"training": spec.training.model_copy(update={"template": template})}
    )
    with pytest.raises(ValueError, match=f"^{message}"):
        _build(changed)


def test_a_train_job_refuses_pod_fields_its_runtime_owns() -> None:
    spec = _spec("TrainJob")
    template = copy.deepcopy(spec.training.template)
    template["spec"]["hostname"] = "trainer"
    changed = spec.model_copy(
        update={"training": spec.training.model_copy(update={"template": template})}
    )
    with pytest.raises(ValueError, match=r"^training.template.spec.hostname: a TrainJob's pods"):
        _build(changed)


@pytest.mark.parametrize(
    ("training", "dataset", "message"),
    [
        ({"kind": "PyTorchJob"}, {}, "a PyTorchJob runs on several pods; set dataset.volumeClaim"),
        ({"kind": "Job", "nodes": 2}, {"volumeClaim": "x"}, "nodes: a Job trains on one pod"),
        ({"kind": "PyTorchJob", "containerName": "trainer"}, {"volumeClaim": "x"},
         "must be named 'pytorch'"),
        ({"kind": "RayJob"}, {"volumeClaim": "x", "storageUri": "s3://b/p"},
         "give at most one of volumeClaim and storageUri"),
        ({"kind": "RayJob"}, {"storageUri": "http://b/p"}, "storageUri"),
        ({"kind": "RayJob"}, {"volumeClaim": "x", "path": "/tmp/d.jsonl"},
         "with volumeClaim the data set must be under /data/"),
        ({"kind": "RayJob"}, {"volumeClaim": "x", "credentialsSecretRef": {"name": "s"}},
         "credentialsSecretRef is for storageUri"),
        ({"kind": "Slurm"}, {"volumeClaim": "x"}, "training.kind"),
    ],
    ids=["no-shared-data", "job-nodes", "pytorch-name", "two-places", "http", "path-off-claim",
         "credentials-without-uri", "unknown-kind"],
)  # fmt: skip
def test_a_spec_that_cannot_reach_every_pod_is_invalid(
    training: dict[str, Any], dataset: dict[str, Any], message: str
) -> None:
    name = training.pop("containerName", "pytorch")
    body = {
        "model": {"name": "m"}, "database": {"urlSecretRef": {"name": "s", "key": "url"}},
        "dataset": dataset,
        "training": {**training, "template": {"spec": {"containers": [
            {"name": name, "image": "t:1", "command": ["python"]}]}}},
    }  # fmt: skip
    with pytest.raises(ValidationError, match=message):
        LearningLoopSpec.model_validate(body)


STATES: list[tuple[str, dict[str, Any] | None, str]] = [
    ("Job", None, "Missing"),
    ("Job", {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, "Succeeded"),
    ("Job", {"status": {"conditions": [{"type": "Failed", "status": "True",
                                        "message": "BackoffLimitExceeded"}]}}, "Failed"),
    ("TrainJob", {"status": {}}, "Running"),
    ("TrainJob", {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, "Succeeded"),
    ("TrainJob", {"status": {"conditions": [{"type": "Failed", "status": "True",
                                             "message": "node-0 OOMKilled"}]}}, "Failed"),
    ("PyTorchJob", {"status": {"conditions": [{"type": "Running", "status": "True"}]}}, "Running"),
    ("PyTorchJob", {"status": {"conditions": [{"type": "Running", "status": "False"},
                                              {"type": "Succeeded", "status": "True"}]}},
     "Succeeded"),
    ("PyTorchJob", {"status": {"conditions": [{"type": "Failed", "status": "True",
                                               "reason": "PyTorchJobFailed"}]}}, "Failed"),
    ("RayJob", {"status": {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}}, "Running"),
    ("RayJob", {"status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}},
     "Succeeded"),
    ("RayJob", {"status": {"jobDeploymentStatus": "Complete", "jobStatus": "FAILED",
                           "message": "driver exited 1"}}, "Failed"),
    ("RayJob", {"status": {"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded"}},
     "Failed"),
    ("RayJob", None, "Missing"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "obj", "phase"), STATES)
def test_the_state_is_read_the_way_each_engine_writes_it(
    kind: str, obj: dict[str, Any] | None, phase: str
) -> None:
    state = trainer_for(kind).state(obj)
    assert state.phase == phase
    if phase == "Failed":
        assert state.message  # the run's failure says why


@pytest.mark.parametrize(
    ("kind", "labels", "container"),
    [
        ("Job", {"job-name": "nayru-run-4"}, "pytorch"),
        ("PyTorchJob", {"training.kubeflow.org/job-name": "nayru-run-4",
                        "training.kubeflow.org/job-role": "master"}, "pytorch"),
        ("TrainJob", {"jobset.sigs.k8s.io/jobset-name": "nayru-run-4",
                      "jobset.sigs.k8s.io/replicatedjob-name": "node",
                      "jobset.sigs.k8s.io/job-index": "0",
                      "batch.kubernetes.io/job-completion-index": "0"}, "node"),
        ("RayJob", {"job-name": "nayru-run-4"}, "ray-job-submitter"),
    ],
)  # fmt: skip
def test_the_report_comes_from_the_rank_0_pod(
    kind: str, labels: dict[str, str], container: str
) -> None:
    spec = _spec("Job", nodes=1) if kind == "Job" else _spec(kind)
    report = trainer_for(kind).report_pod("nayru-run-4", spec)
    assert (report.labels, report.container) == (labels, container)


@pytest.mark.parametrize(
    ("driver", "code", "message"),
    [
        ('echo "epoch 1"; echo \'{"modelUri": "s3://m/run-4", "metrics": {"loss": 0.2}}\'; '
         'echo "Job raysubmit_1 succeeded"', 0,
         '{"modelUri": "s3://m/run-4", "metrics": {"loss": 0.2}}'),
        ('echo \'{"modelUri": "s3://m/old"}\'; echo \'{"metrics": {}, "modelUri": "s3://m/new"}\'',
         0, '{"metrics": {}, "modelUri": "s3://m/new"}'),
        ('echo "Traceback"; exit 3', 3, ""),
    ],
    ids=["report-then-ray-lines", "last-report-wins", "failed-driver"],
)  # fmt: skip
def test_the_ray_submitter_writes_the_driver_s_report_as_its_termination_message(
    tmp_path: Path, driver: str, code: int, message: str
) -> None:
    """The submitter's own script, run by bash with a stand-in ``ray`` command that
    prints what a driver prints (the job was not submitted before: it submits)."""
    ray = tmp_path / "ray"
    ray.write_text(f'#!/bin/bash\nif [ "$2" = status ]; then exit 1; fi\n{driver}\n')
    ray.chmod(0o755)
    log = tmp_path / "termination-log"
    script = submit_script("python train.py").replace("/dev/termination-log", str(log))
    script = script.replace("/tmp/afs-driver.log", str(tmp_path / "driver.log"))
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "RAY_DASHBOARD_ADDRESS": "head:8265",
           "RAY_JOB_SUBMISSION_ID": "raysubmit_1"}  # fmt: skip
    done = subprocess.run(["/bin/bash", "-c", script], env=env, capture_output=True, timeout=30)
    assert done.returncode == code
    assert log.read_text().strip() == message


def test_the_export_job_writes_once_to_object_storage_with_the_secret_s_credentials() -> None:
    spec = _spec("RayJob", where={"storageUri": "s3://models/datasets",
                                  "credentialsSecretRef": {"name": "s3-writer"}})  # fmt: skip
    context = RunContext(loop="nayru", namespace="ml", uid="u", spec=spec, run=4, since=None,
                         exporter_image="afs:1")  # fmt: skip
    job = export_job(context)
    assert job["metadata"]["name"] == "nayru-run-4-export"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "export-dataset"
    assert "--upload=s3://models/datasets/nayru-run-4/dataset.jsonl" in container["command"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-writer"}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def _documented_loops() -> list[tuple[str, dict[str, Any]]]:
    from tests.docs_examples import ROOT, code_blocks

    found = [(p.name, yaml.safe_load(p.read_text()))
             for p in sorted((ROOT / "examples" / "k8s").glob("learningloop*.yaml"))]  # fmt: skip
    blocks = code_blocks((ROOT / "docs" / "operator.md").read_text(), "yaml")
    found += [(f"operator.md#{i}", yaml.safe_load(b)) for i, b in enumerate(blocks)
              if "kind: LearningLoop" in b]  # fmt: skip
    return found


DOCUMENTED = _documented_loops()


@pytest.mark.parametrize(("where", "manifest"), DOCUMENTED, ids=[w for w, _ in DOCUMENTED])
def test_every_documented_loop_builds_an_object_its_engine_accepts(
    where: str, manifest: dict[str, Any]
) -> None:
    spec = LearningLoopSpec.model_validate(manifest["spec"])
    obj = _build(spec)
    if obj["kind"] == "Job":
        document = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"},
                    "template": obj["spec"]["template"]}  # fmt: skip
        kubernetes_validate.validate(document, "1.30", strict=True)
    else:
        assert _unknown(obj) in ([], {}), where


def test_each_distributed_kind_has_a_documented_example() -> None:
    kinds = {manifest["spec"]["training"].get("kind") for _, manifest in DOCUMENTED}
    assert set(DISTRIBUTED) <= kinds


def test_a_ray_job_name_kuberay_would_refuse_is_refused_by_name() -> None:
    spec = _spec("RayJob")
    context = RunContext(loop="n" * 41, namespace="ml", uid=None, spec=spec, run=12,
                         since=None, exporter_image="afs:1")  # fmt: skip
    with pytest.raises(ValueError, match=r"^metadata\.name: KubeRay takes RayJob names of at most"):
        trainer_for("RayJob").build(context)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"sha256": SHA, "final_count": 30}, ExportedDataset(SHA, 30)),
        ({"sha256": "not-a-hash", "final_count": -1}, ExportedDataset()),
        ({"sha256": SHA.upper(), "final_count": True}, ExportedDataset()),
        ({}, ExportedDataset()),
    ],
    ids=["good", "garbage", "wrong-case-and-bool", "empty"],
)
def test_only_a_report_the_status_accepts_is_kept(
    report: dict[str, Any], expected: ExportedDataset
) -> None:
    assert exported_dataset(report) == expected
