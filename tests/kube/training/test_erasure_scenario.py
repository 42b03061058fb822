"""Privacy through the operator, end to end: the real kopf and ``kubernetes`` client
against the Kubernetes emulator, records in a real PostgreSQL. The export Job's command,
as the operator wrote it, runs for real (the test stands in for the kubelet: the data
volume is a directory here, the termination message a file); the ModelVersion carries
what was redacted and the data set's id, and ``afs-continuous forget`` erases a user's
records and labels the ModelVersion trained on them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest

from afs.continuous import UsageLogger
from afs.continuous.cli import main
from afs.continuous.kube.client import KubeClient
from afs.continuous.privacy.erasure import LABEL_ERASED
from tests.kube.emulator import ApiServerEmulator
from tests.kube.test_operator_scenarios import (
    NAMESPACE,
    _call,
    _eventually,
    _get_custom,
    _job_status,
    _loop,
    _setup,
    operator,
)
from tests.kube.training.test_scenarios import (
    EXPORT,
    _finish_training,
    _manifest,
    _pod,
    _register_kind,
    _training_object,
)
from tests.postgres_server import fresh_schema

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(120)]
KIND = "TrainJob"
EMAIL = "anna.smith@example.com"


@pytest.fixture
def personal_db() -> Iterator[str]:
    """30 records, 6 of them from one user who typed her e-mail address."""
    with fresh_schema() as url:
        with UsageLogger(url=url) as logger:
            logger.log_many([
                {"query": f"q{i}" if i >= 6 else f"q{i}: my address is {EMAIL}",
                 "response": f"a{i}", "model": "nayru-v1", "quality_score": 0.9,
                 "user_feedback": 1, "assignment_key": "user-anna" if i < 6 else f"user-{i}"}
                for i in range(30)
            ])  # fmt: skip
        yield url


@pytest.fixture
def kubeconfig(
    kmock: kmock.KubernetesEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user running ``afs-continuous forget`` has: a kubeconfig for the cluster."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "dpo", "user": {"token": "x"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "dpo"}}],
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))


def _run_exporter(
    kube: KubeClient, url: str, volume: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The kubelet's part: run the export Job's container command as written, with the
    data volume and the termination log at paths of this machine; then the Job's status
    and its pod's termination message."""
    job = kube.get_job(NAMESPACE, EXPORT)
    assert job is not None
    [container] = job["spec"]["template"]["spec"]["containers"]
    termination = volume / "termination-log"
    command = [
        str(volume / "dataset.jsonl") if arg == "/data/dataset.jsonl"
        else str(termination) if arg == "/dev/termination-log"
        else arg
        for arg in container["command"]
    ]  # fmt: skip
    assert command[:2] == ["afs-continuous", "export"]
    monkeypatch.setenv("AFS_DATABASE_URL", url)
    assert main(command[1:]) == 0
    report = termination.read_text()
    kube.batch.patch_namespaced_job_status(
        EXPORT, NAMESPACE, {"status": _job_status(succeeded=True)}
    )
    pod = _pod(f"{EXPORT}-x1", {"job-name": EXPORT}, "export-dataset", report)
    kube.core.create_namespaced_pod(NAMESPACE, pod)
    return dict(json.loads(report))


async def test_a_run_redacts_records_lineage_and_forget_labels_its_model_version(
    kmock: kmock.KubernetesEmulator,
    personal_db: str,
    kubeconfig: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _register_kind(kmock, KIND)
    async with operator(kmock) as kube:
        await _setup(kube, personal_db, _manifest(KIND))
        await _eventually(lambda: kube.get_job(NAMESPACE, EXPORT))
        report = await _call(_run_exporter, kube, personal_db, tmp_path, monkeypatch)
        assert report["dataset_id"] == f"{NAMESPACE}/nayru-run-1"
        assert report["redaction"]["entities"] == {"EMAIL_ADDRESS": 6}
        dataset = (tmp_path / "dataset.jsonl").read_text()
        assert EMAIL not in dataset and dataset.count("<EMAIL_ADDRESS>") == 6

        run = await _eventually(
            lambda: ((_loop(kube).get("status") or {}).get("currentRun") or {}).get("redaction")
        )
        assert run["entities"] == {"EMAIL_ADDRESS": 6}
        await _eventually(lambda: _training_object(kube, KIND))
        await _call(lambda: _finish_training(kube, KIND, succeeded=True))
        version = await _eventually(lambda: _get_custom(kube, "modelversions", "nayru-run-1"))
        lineage = version["spec"]["lineage"]
        assert lineage["datasetId"] == f"{NAMESPACE}/nayru-run-1"
        assert lineage["redaction"]["entities"] == {"EMAIL_ADDRESS": 6}
        assert lineage["redaction"]["recordsRedacted"] == 6

        capsys.readouterr()
        argv = ["--db", personal_db, "--json", "forget", "--assignment-key", "user-anna"]
        assert await _call(main, argv) == 0
        outcome = json.loads(capsys.readouterr().out)
        assert outcome["records"] == 6
        assert outcome["model_versions"] == [f"{NAMESPACE}/nayru-run-1"]
        assert outcome["marked"] == [f"{NAMESPACE}/nayru-run-1"]
        labelled = await _eventually(lambda: _get_custom(kube, "modelversions", "nayru-run-1"))
        assert labelled["metadata"]["labels"][LABEL_ERASED] == "true"
    with UsageLogger(url=personal_db) as logger:
        assert logger.store.statistics().count == 24
