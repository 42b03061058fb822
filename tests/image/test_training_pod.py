"""A training Job's pod as the operator builds it, run with the two images: the exporter
init container (this image) exports the loop's records from PostgreSQL into the shared
volume, then the example trainer's image trains on that file and writes its termination
report, which the operator's parser accepts."""

from __future__ import annotations

import uuid
from pathlib import Path

from afs.continuous.kube.planning import parse_termination_message
from tests.image.conftest import Build
from tests.image.containers import (
    IMAGE,
    TRAINER_IMAGE,
    ChartContainer,
    database_for_containers,
    podman,
)
from tests.kube.test_operator_scenarios import _first_job, _loop_manifest, usage_db as usage_db


def _termination_log(folder: Path, name: str) -> Path:
    """The file Kubernetes mounts at a container's terminationMessagePath."""
    path = folder / f"{name}.termination-log"
    path.touch()
    path.chmod(0o666)
    return path


def test_the_job_s_pod_exports_then_trains_and_reports(
    built: Build, usage_db: str, tmp_path: Path
) -> None:
    manifest = _loop_manifest()
    manifest["spec"]["training"]["template"]["spec"]["containers"][0]["image"] = TRAINER_IMAGE
    manifest["spec"]["dataset"] = {"minQualityScore": 0.5}
    pod = _first_job(manifest, uid="loop-uid-1")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    data = tmp_path / "afs-data"
    data.mkdir(mode=0o777)
    data.chmod(0o777)  # an emptyDir is writable by the pod's user
    inside, mounts = database_for_containers(usage_db)
    reports = {}
    steps = [(pod["initContainers"][0], IMAGE), (pod["containers"][0], TRAINER_IMAGE)]
    for container, image in steps:
        log = _termination_log(tmp_path, container["name"])
        reports[container["name"]] = log
        step = ChartContainer(pod=pod, container=container, volumes=volumes)
        arguments = step.run_options(
            secrets={"usage-db": {"url": inside}}, scratch=tmp_path, published={},
            shared={"afs-data": data},
            extra_mounts=[*mounts, f"{log}:/dev/termination-log"],
            image=image,
        )  # fmt: skip
        name = f"afs-{container['name']}-{uuid.uuid4().hex[:8]}"
        result = podman("run", "--rm", "--name", name, *arguments, check=False, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    exported = (data / "dataset.jsonl").read_text().splitlines()
    assert len(exported) == 30
    report = parse_termination_message(reports["trainer"].read_text())
    assert report.model_uri == "file:///data/output/nayru-run-1/model.json"
    assert (data / "output" / "nayru-run-1" / "model.json").is_file()
    assert report.metrics["train_examples"] > 0
