"""The evaluation gate through the real operator: kopf and the ``kubernetes`` client
against the Kubernetes emulator, records in a real PostgreSQL. The tests stand in for
the Job controller and the kubelet (they finish the training Job and the evaluator Job
and give the pods their termination messages); the operator does the rest."""

from __future__ import annotations

import json
from typing import Any

import kmock
import pytest

from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION
from afs.continuous.kube.client import KubeClient
from tests.kube.emulator import ApiServerEmulator
from tests.kube.pods import restricted
from tests.kube.test_operator_scenarios import (
    NAMESPACE,
    PROMOTION,
    _call,
    _event_reasons,
    _eventually,
    _finish_job,
    _get_custom,
    _job_status,
    _loop,
    _loop_manifest,
    _register,
    _setup,
    operator,
    usage_db as usage_db,  # a fixture: re-exported
)

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(120)]
EVAL_JOB = "nayru-run-1-eval"
EVALUATION: dict[str, Any] = {
    "template": restricted(
        {"name": "evaluator", "image": "trainer:1", "command": ["python", "evaluate.py"]}
    ),
    "metrics": [{"name": "accuracy", "maxRegression": 0.02}],
    "minGoldenPassRate": 1.0,
    "goldenSet": {"configMapRef": {"name": "nayru-golden", "key": "golden.jsonl"}},
    "timeoutSeconds": 1800,
}
BASELINE = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion",
    "metadata": {"name": "nayru-baseline", "namespace": NAMESPACE},
    "spec": {"model": "nayru-v1", "version": "baseline", "uri": "s3://models/nayru/baseline"},
}  # fmt: skip
TRAINED = json.dumps({"modelUri": "s3://models/nayru/run-1", "metrics": {"loss": 0.2}})


async def _trained(kube: KubeClient) -> dict[str, Any]:
    """Run 1 trained; its version recorded and its evaluator Job started."""
    await _call(
        kube.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE,
        "modelversions", BASELINE,
    )  # fmt: skip
    await _setup(kube, None, _loop_manifest(promotion=PROMOTION, evaluation=EVALUATION))
    await _eventually(lambda: kube.get_job(NAMESPACE, "nayru-run-1"))
    await _call(lambda: _finish_job(kube, "nayru-run-1", succeeded=True, message=TRAINED))
    job: dict[str, Any] = await _eventually(lambda: kube.get_job(NAMESPACE, EVAL_JOB))
    return job


def _finish_evaluation(kube: KubeClient, report: dict[str, Any] | None, *, ok: bool = True) -> None:
    """The evaluator's pod ended with ``report`` as its message, then its Job."""
    message = None if report is None else json.dumps(report)
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{EVAL_JOB}-x1", "namespace": NAMESPACE,
                     "labels": {"job-name": EVAL_JOB}, "resourceVersion": "1"},
        "spec": {"containers": [{"name": "evaluator", "image": "trainer:1"}]},
        "status": {"containerStatuses": [
            {"name": "evaluator", "image": "trainer:1", "imageID": "x", "ready": False,
             "restartCount": 0,
             "state": {"terminated": {"exitCode": 0 if ok else 1, "message": message}}}]},
    }  # fmt: skip
    kube.core.create_namespaced_pod(NAMESPACE, pod)
    kube.batch.patch_namespaced_job_status(
        EVAL_JOB, NAMESPACE, {"status": _job_status(succeeded=ok)}
    )


def _version(kube: KubeClient) -> dict[str, Any]:
    return _get_custom(kube, "modelversions", "nayru-run-1") or {}


def _evaluation(kube: KubeClient, phase: str) -> dict[str, Any] | None:
    evaluation = (_version(kube).get("status") or {}).get("evaluation") or {}
    return evaluation if evaluation.get("phase") == phase else None


def _evaluating_run(kube: KubeClient) -> dict[str, Any] | None:
    run = (_loop(kube).get("status") or {}).get("currentRun") or {}
    return run if run.get("phase") == "Evaluating" else None


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


async def test_the_evaluator_job_gets_the_candidate_the_champion_and_the_held_out_sets(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    _register(kmock)
    async with operator(kmock) as kube:
        await _database_secret_for(kube, usage_db)
        job = await _trained(kube)
        training = await _call(kube.get_job, NAMESPACE, "nayru-run-1")
        exporter = training["spec"]["template"]["spec"]["initContainers"][0]
        assert "--split=0.9,0.05,0.05" in exporter["command"]
        assert "--golden=/golden/golden.jsonl" in exporter["command"]
        pod = job["spec"]["template"]["spec"]
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        assert env["AFS_MODEL_URI"] == "s3://models/nayru/run-1"
        assert env["AFS_CHAMPION_MODEL_URI"] == "s3://models/nayru/baseline"
        assert env["AFS_EVAL_DATASET_PATH"] == "/data/dataset.test.jsonl"
        assert env["AFS_GOLDEN_SET_PATH"] == "/golden/golden.jsonl"
        [export] = pod["initContainers"]
        assert export["command"][-2:] == ["--held-out-only", "--no-membership"]
        assert not any(arg.startswith("--since") for arg in export["command"])
        assert job["spec"]["activeDeadlineSeconds"] == 1800
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["afs-golden-set"]["configMap"]["name"] == "nayru-golden"
        # the loop's status is patched after its handler created the Job: wait for it
        run = await _eventually(lambda: _evaluating_run(kube))
        assert run["modelVersion"] == "nayru-run-1"
        running = await _eventually(lambda: _evaluation(kube, "Running"))
        assert running["job"] == EVAL_JOB
        assert await _call(_get_custom, kube, "abtests", "nayru-run-1") is None


async def _database_secret_for(kube: KubeClient, url: str) -> None:
    from tests.kube.test_operator_scenarios import _database_secret

    await _database_secret(kube, url)


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        ({"metrics": {"accuracy": 0.70, "golden_pass_rate": 1.0}, "champion": {"accuracy": 0.80}},
         "accuracy 0.7 vs champion 0.8: regressed by 0.1, more than 0.02"),
        ({"metrics": {"accuracy": 0.81, "golden_pass_rate": 0.9}, "champion": {"accuracy": 0.80}},
         "golden_pass_rate 0.9: must be at least 1"),
        ({"metrics": {"accuracy": 0.81, "golden_pass_rate": 1.0}},
         "accuracy: the champion's is missing from the report"),
        (None, "evaluator report: the evaluator wrote no termination message"),
    ],
    ids=["regression", "golden", "no-champion-metrics", "no-report"],
)  # fmt: skip
async def test_a_failed_gate_rejects_the_version_and_no_traffic_moves(
    kmock: kmock.KubernetesEmulator, usage_db: str, report: dict[str, Any] | None, reason: str
) -> None:
    _register(kmock)
    async with operator(kmock) as kube:
        await _database_secret_for(kube, usage_db)
        await _trained(kube)
        await _call(_finish_evaluation, kube, report)
        failed = await _eventually(lambda: _evaluation(kube, "Failed"))
        assert reason in failed["reasons"][0]
        version = await _eventually(
            lambda: (v := _version(kube)).get("status", {}).get("stage") == "Rejected" and v
        )
        evaluated = _condition(version, "Evaluated")
        assert (evaluated["status"], evaluated["reason"]) == ("False", "EvaluationFailed")
        status = await _eventually(
            lambda: (s := _loop(kube).get("status") or {}).get("runs", {}).get("rejected") and s
        )
        assert status.get("currentRun") is None
        assert status["runs"]["recent"][-1]["result"] == "Rejected"
        assert await _call(_get_custom, kube, "abtests", "nayru-run-1") is None
        assert not [key for key in kmock.objects if "httproutes" in str(key)]  # no route touched
        await _eventually(lambda: "EvaluationFailed" in _event_reasons(kmock))


async def test_a_passing_gate_goes_on_to_the_ab_test(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    _register(kmock)
    async with operator(kmock) as kube:
        await _database_secret_for(kube, usage_db)
        await _trained(kube)
        report = {"metrics": {"accuracy": 0.81, "golden_pass_rate": 1.0},
                  "champion": {"accuracy": 0.80}}  # fmt: skip
        await _call(_finish_evaluation, kube, report)
        test = await _eventually(lambda: _get_custom(kube, "abtests", "nayru-run-1"))
        assert test["spec"]["challenger"] == {"modelVersion": "nayru-run-1"}
        passed = await _eventually(lambda: _evaluation(kube, "Passed"))
        assert passed["metrics"] == {"accuracy": 0.81, "golden_pass_rate": 1.0}
        assert passed["champion"] == {"accuracy": 0.8}
        version = await _eventually(
            lambda: (v := _version(kube)).get("status", {}).get("stage") == "Challenger" and v
        )
        assert _condition(version, "Evaluated")["status"] == "True"
        await _eventually(
            lambda: (
                {"EvaluationStarted", "EvaluationPassed", "ABTestCreated"} <= _event_reasons(kmock)
            )
        )


async def test_a_restarted_operator_adopts_the_running_evaluation(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    _register(kmock)
    async with operator(kmock) as kube:
        await _database_secret_for(kube, usage_db)
        await _trained(kube)
        await _eventually(lambda: _evaluation(kube, "Running"))
    async with operator(kmock) as kube:  # a new operator: the run is still Evaluating
        report = {"metrics": {"accuracy": 0.81, "golden_pass_rate": 1.0},
                  "champion": {"accuracy": 0.80}}  # fmt: skip
        await _call(_finish_evaluation, kube, report)
        await _eventually(lambda: _get_custom(kube, "abtests", "nayru-run-1"))
        jobs = await _call(kube.batch.list_namespaced_job, NAMESPACE)
        names = [job.metadata.name for job in jobs.items]
        assert names.count(EVAL_JOB) == 1
