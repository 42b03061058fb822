"""Deploy mode end to end: the real kopf and ``kubernetes`` client against the emulator.
A challenger that exists only as a ModelVersion with ``spec.serving`` gets its Deployment
and Service (once, across restarts), the test waits until it is Available, puts its
Service in the route, and after the rollback the route is the user's again while the
rejected version is scaled down and later deleted."""

from __future__ import annotations

import copy
from typing import Any

import kmock
import pytest

from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION
from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.serving import MODEL_VERSION_LABEL
from tests.conftest import FakeClock
from tests.kube.emulator import ApiServerEmulator
from tests.kube.pods import restricted
from tests.kube.test_abtest_providers import _without_our_record
from tests.kube.test_abtest_scenarios import (
    GATEWAY,
    _abtest,
    _condition,
    _counting,
    _live_route,
    _phase,
    _route,
    _stage,
    _status,
    _traffic,
    _version,
)
from tests.kube.test_operator_scenarios import (
    NAMESPACE,
    _call,
    _database_secret,
    _eventually,
    _get_custom,
    _pruned_in_a_cluster,
    _register,
    operator,
)
from tests.postgres_server import fresh_schema

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(90)]

TEMPLATE = {
    "metadata": {"labels": {"app": "nayru"}},
    **restricted({"name": "server", "image": "registry/nayru-server:1.4",
                  "ports": [{"containerPort": 8080}]}),
}  # fmt: skip
CHAMPION_ONLY = _route({"name": "nayru-v1", "port": 80})


@pytest.fixture
def usage_db() -> Any:
    with fresh_schema() as url:
        yield url


def _register_workloads(emulator: kmock.KubernetesEmulator) -> None:
    _register(emulator)
    for resource, kind in (("apps/v1/deployments", "Deployment"), ("v1/services", "Service")):
        info = emulator.resources[resource]
        info.kind, info.namespaced = kind, True
        info.verbs = {"list", "watch", "get", "create", "patch", "update", "delete"}
        info.subresources = {"status"}


async def _setup(kube: KubeClient, url: str) -> None:
    await _database_secret(kube, url)
    challenger = _version("nayru-v2")
    challenger["spec"]["serving"] = {"template": TEMPLATE, "scaleDownAfter": "1h",
                                     "deleteAfter": "1d"}  # fmt: skip
    for body in (_version("nayru-v1"), challenger):
        await _call(kube.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE,
                    "modelversions", body)  # fmt: skip
    await _call(kube.custom.create_namespaced_custom_object, *GATEWAY[:2], NAMESPACE,
                GATEWAY[2], copy.deepcopy(CHAMPION_ONLY))  # fmt: skip
    await _call(kube.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE,
                "abtests", _abtest())  # fmt: skip


def _deployment(kube: KubeClient) -> dict[str, Any] | None:
    return kube.get_deployment(NAMESPACE, "nayru-v2")


def _serving(kube: KubeClient) -> dict[str, Any]:
    version = _get_custom(kube, "modelversions", "nayru-v2") or {}
    status: dict[str, Any] = (version.get("status") or {}).get("serving") or {}
    return status


def _creations(emulator: kmock.KubernetesEmulator) -> dict[str, int]:
    counts = {"deployments": 0, "services": 0}
    for request in list(emulator):
        plural = request.resource.plural if request.resource is not None else None
        if request.method == "POST" and plural in counts:
            counts[plural] += 1
    return counts


async def _make_available(kube: KubeClient) -> None:
    """What the Deployment controller would report once the pods are ready."""
    status = {"status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                         "availableReplicas": 1,
                         "conditions": [{"type": "Available", "status": "True"}]}}  # fmt: skip
    await _call(kube.apps.patch_namespaced_deployment_status, "nayru-v2", NAMESPACE, status)


async def test_the_operator_stands_the_challenger_up_and_winds_it_down(
    kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    _register_workloads(kmock)
    async with operator(kmock, clock=clock) as kube:
        await _setup(kube, usage_db)
        deployment = await _eventually(lambda: _deployment(kube))
        service = await _eventually(lambda: kube.get_service(NAMESPACE, "nayru-v2"))
        (owner,) = deployment["metadata"]["ownerReferences"]
        assert owner["kind"] == "ModelVersion" and owner["name"] == "nayru-v2"
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "AFS_MODEL_URI", "value": "s3://models/nayru-v2"} in env
        assert service["spec"]["selector"] == {MODEL_VERSION_LABEL: "nayru-v2"}
        status = await _eventually(
            lambda: _condition(s := _status(kube), "Ready").get("reason") == "NotAvailable" and s
        )
        assert "nayru-v2" in _condition(status, "Ready")["message"]
        route = await _call(_live_route, kube)
        assert [r["name"] for r in route["spec"]["rules"][1]["backendRefs"]] == ["nayru-v1"]

    async with operator(kmock, clock=clock) as kube:  # a restarted operator creates nothing
        await _make_available(kube)
        start = await _counting(kube)
        assert _creations(kmock) == {"deployments": 1, "services": 1}  # once, across restarts
        names = [r["name"] for r in (await _call(_live_route, kube))["spec"]["rules"][1]
                 ["backendRefs"]]  # fmt: skip
        assert names == ["nayru-v1", "nayru-v2"]
        _traffic(usage_db, start, arms={"nayru-v1": (300, 0.7), "nayru-v2": (300, 0.5)})
        clock.advance(hours=3)
        await _eventually(_phase(kube, "RolledBack"))
        assert _without_our_record(await _call(_live_route, kube)) == CHAMPION_ONLY
        await _eventually(lambda: _stage(kube, "nayru-v2") == "Rejected")
        await _eventually(lambda: _serving(kube).get("idleSince"))
        # nothing the operator wrote (status.serving, the conditions) would be pruned
        assert await _call(lambda: _pruned_in_a_cluster(kube, expect="ModelVersion")) == []
        assert (await _call(_deployment, kube) or {})["spec"]["replicas"] == 1  # grace period
        clock.advance(hours=1, minutes=1)
        await _eventually(lambda: (_deployment(kube) or {}).get("spec", {}).get("replicas") == 0)
        clock.advance(days=1, minutes=1)
        await _eventually(lambda: _deployment(kube) is None)
        await _eventually(lambda: kube.get_service(NAMESPACE, "nayru-v2") is None)
