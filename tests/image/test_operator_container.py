"""The operator's container as the chart starts it (its command, arguments, environment
and security context), against the Kubernetes API emulator on the host's loopback through
a mounted kubeconfig, reconciles a LearningLoop: its status is written and the training
Job its records call for is created."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kmock
import pytest

from afs.continuous.kube.client import KubeClient
from tests.image.conftest import Build
from tests.image.containers import (
    HOST_LOOPBACK,
    ChartContainer,
    database_for_containers,
    free_port,
    podman,
)
from tests.kube.emulator import ApiServerEmulator
from tests.kube.test_operator_scenarios import (
    NAMESPACE,
    _call,
    _eventually,
    _loop,
    _loop_manifest,
    _register,
    _setup,
    usage_db as usage_db,
)

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(180)]


def _kubeconfig(emulator: kmock.KubernetesEmulator, folder: Path) -> Path:
    """The emulator as a container reaches it: the host's loopback is 10.0.2.2 there."""
    address = urlsplit(str(emulator.url))
    server = f"http://{HOST_LOOPBACK}:{address.port}"
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "operator", "user": {"token": "x"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "operator"}}],
    }  # fmt: skip
    folder.mkdir(mode=0o755)
    path = folder / "config"
    path.write_text(json.dumps(config))
    path.chmod(0o644)
    return path


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


async def test_the_operator_container_reconciles_a_loop(
    built: Build, kmock: kmock.KubernetesEmulator, usage_db: str, tmp_path: Path
) -> None:
    _register(kmock)
    kube = KubeClient.connect(host=str(kmock.url).rstrip("/"))
    inside, mounts = database_for_containers(usage_db)
    await _setup(kube, inside, _loop_manifest())
    chart = ChartContainer.rendered("operator")
    kubeconfig = _kubeconfig(kmock, tmp_path / "kube")
    health, name = free_port(), f"afs-operator-{uuid.uuid4().hex[:8]}"
    arguments = chart.run_options(
        secrets={}, scratch=tmp_path, published={"health": health},
        # no service account outside a cluster: the kubeconfig, mounted read-only
        extra_env={"KUBECONFIG": "/var/run/afs-kube/config"},
        extra_mounts=[f"{kubeconfig.parent}:/var/run/afs-kube:ro", *mounts],
    )  # fmt: skip
    await asyncio.to_thread(podman, "run", "--detach", "--name", name, *arguments)
    try:
        status: dict[str, Any] = await _eventually(
            lambda: (_loop(kube).get("status") or {}).get("currentRun"), timeout=90
        )
        assert (status["number"], status["job"]) == (1, "nayru-run-1")
        job = await _call(kube.get_job, NAMESPACE, "nayru-run-1")
        assert job is not None
        assert await asyncio.to_thread(_healthy, health)
    finally:
        await asyncio.to_thread(podman, "stop", "--time", "10", name, check=False)
        logs = (await asyncio.to_thread(podman, "logs", name, check=False)).stderr
        await asyncio.to_thread(podman, "rm", "--force", name, check=False)
    assert "Traceback" not in logs, logs
