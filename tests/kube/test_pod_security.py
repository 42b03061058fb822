"""Every container we run meets the Pod Security "restricted" profile and more: non-root,
a read-only root file system, no capabilities, the runtime's seccomp profile, no
privilege escalation, and no service-account token where no API is called. The user's
trainer keeps exactly what the user wrote."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec
from afs.continuous.kube.training import RunContext
from afs.continuous.kube.training.export import export_job
from afs.continuous.kube.training.job import training_job
from tests.docs_examples import ROOT
from tests.kube.test_chart import COLLECTOR, _render

LOOP = yaml.safe_load(Path(ROOT / "examples/k8s/learningloop.yaml").read_text())["spec"]


def _workloads() -> dict[str, dict[str, Any]]:
    """Pod specs by what runs in them: the chart's Deployments (collector on) and a
    training Job made from the example loop."""
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in _render({"collector": COLLECTOR})
        if d["kind"] == "Deployment"
    }
    job = training_job(
        loop="nayru", namespace="ml", uid="u", spec=LearningLoopSpec.model_validate(LOOP),
        run=1, since=None,
    )  # fmt: skip
    pods["training-job"] = job["spec"]["template"]["spec"]
    distributed = yaml.safe_load((ROOT / "examples/k8s/learningloop-rayjob.yaml").read_text())
    context = RunContext(
        loop="nayru", namespace="ml", uid="u", run=1, since=None, exporter_image="afs:1",
        spec=LearningLoopSpec.model_validate(distributed["spec"]),
    )  # fmt: skip
    pods["export-job"] = export_job(context)["spec"]["template"]["spec"]
    return pods


def _ours(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Our containers in a pod: all of a Deployment's; a training Job's exporter only."""
    if any(c["name"] == "export-dataset" for c in pod.get("initContainers", [])):
        return [c for c in pod["initContainers"] if c["name"] == "export-dataset"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def _setting(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A container's setting, else its pod's (where Kubernetes allows both)."""
    own = container.get("securityContext") or {}
    return own[key] if key in own else (pod.get("securityContext") or {}).get(key)


WORKLOADS = _workloads()
CONTAINERS = [
    pytest.param(pod, container, id=f"{name}/{container['name']}")
    for name, pod in WORKLOADS.items()
    for container in _ours(pod)
]


def test_every_workload_is_covered() -> None:
    assert set(WORKLOADS) == {
        "afs-afs-continuous", "afs-afs-continuous-collector", "training-job", "export-job",
    }  # fmt: skip


@pytest.mark.parametrize(("pod", "container"), CONTAINERS)
def test_our_containers_run_locked_down(pod: dict[str, Any], container: dict[str, Any]) -> None:
    context = container.get("securityContext") or {}
    assert _setting(pod, container, "runAsNonRoot") is True
    assert context.get("readOnlyRootFilesystem") is True
    assert context.get("allowPrivilegeEscalation") is False
    assert context.get("capabilities") == {"drop": ["ALL"]}
    assert _setting(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}
    assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])}


@pytest.mark.parametrize("name", ["afs-afs-continuous-collector", "training-job", "export-job"])
def test_pods_that_call_no_api_get_no_token(name: str) -> None:
    assert WORKLOADS[name]["automountServiceAccountToken"] is False


def test_the_users_trainer_keeps_what_the_user_wrote() -> None:
    loop = copy.deepcopy(LOOP)
    trainer = loop["training"]["template"]["spec"]["containers"][0]
    trainer["securityContext"] = {"runAsUser": 0, "privileged": False}
    job = training_job(
        loop="nayru", namespace="ml", uid="u", spec=LearningLoopSpec.model_validate(loop),
        run=1, since=None,
    )  # fmt: skip
    (written,) = job["spec"]["template"]["spec"]["containers"]
    assert written["securityContext"] == {"runAsUser": 0, "privileged": False}
