"""Scenarios that hold on any API server, run twice: against the emulator (always) and
against a real cluster when ``AFS_TEST_KUBECONFIG`` names a kubeconfig (skipped
otherwise, saying so).

A real API server does what the emulator only imitates: it validates against the CRDs'
schemas, prunes what they do not declare, and keeps ``status`` to its subresource. The
scenarios here need no other controller (no Job runs, no traffic provider acts) and
nothing the emulator alone can do, so each runs unchanged on both. On a cluster, the
test applies the CRDs from ``crds/`` (server-side; it needs the rights to) and works in a
namespace of its own, deleted afterwards. The operator runs in the test process with the
kubeconfig's credentials, as ``afs-continuous operator`` runs outside a cluster.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import kmock
import kopf
import pytest
import yaml
from kubernetes import client as k8s, config as k8s_config

from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION
from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.controllers import OperatorConfig, make_registry
from afs.continuous.kube.metrics import OperatorMetrics
from tests.docs_examples import ROOT
from tests.kube.emulator import ApiServerEmulator, stop_operator
from tests.kube.pods import restricted
from tests.kube.test_operator_scenarios import _eventually, _register
from tests.postgres_server import fresh_schema, unreachable_url

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(180)]
KUBECONFIG = os.environ.get("AFS_TEST_KUBECONFIG")


@dataclass
class Api:
    """Where a scenario runs: a client, a namespace, and how kopf logs in."""

    kube: KubeClient
    namespace: str
    login: Callable[..., kopf.ConnectionInfo | None]
    emulated: bool = False
    """The emulator: kopf runs cluster-wide there (it cannot serve kopf's per-namespace
    mode) and every kind the scenarios use is registered; a cluster is kept to our
    namespace and may lack a kind."""

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    async def create(self, plural: str, body: dict[str, Any]) -> None:
        body["metadata"]["namespace"] = self.namespace
        await self.call(
            self.kube.custom.create_namespaced_custom_object, GROUP, VERSION, self.namespace,
            plural, body,
        )  # fmt: skip

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, name
        )
        return obj

    async def secret(self, name: str, url: str) -> None:
        body = {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": self.namespace},
            "data": {"url": base64.b64encode(url.encode()).decode()},
        }  # fmt: skip
        await self.call(self.kube.core.create_namespaced_secret, self.namespace, body)


@contextlib.asynccontextmanager
async def _emulator(emulator: kmock.KubernetesEmulator) -> AsyncIterator[Api]:
    _register(emulator)
    url = str(emulator.url).rstrip("/")

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    yield Api(KubeClient.connect(host=url), "ml", login, emulated=True)


@contextlib.asynccontextmanager
async def _cluster(kubeconfig: str) -> AsyncIterator[Api]:
    api_client = k8s_config.new_client_from_config(config_file=kubeconfig)
    kube = KubeClient(api_client)
    await asyncio.to_thread(_apply_crds, api_client)
    namespace = f"afs-test-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(kube.core.create_namespace, {"metadata": {"name": namespace}})
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = kubeconfig  # kopf logs in as the kubernetes client would

    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    try:
        yield Api(kube, namespace, login)
    finally:
        await asyncio.to_thread(kube.core.delete_namespace, namespace)
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


def _apply_crds(api_client: k8s.ApiClient) -> None:
    """Our CRDs, applied server-side as ``kubectl apply --server-side`` would, then
    waited for until Established."""
    extensions = k8s.ApiextensionsV1Api(api_client)
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        extensions.patch_custom_resource_definition(
            crd["metadata"]["name"], crd, field_manager="afs-continuous-tests", force=True,
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        for _ in range(60):
            conditions = extensions.read_custom_resource_definition(name).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            time.sleep(1)


@pytest.fixture(params=["emulator", "cluster"])
async def api(
    request: pytest.FixtureRequest, kmock: kmock.KubernetesEmulator
) -> AsyncIterator[Api]:
    if request.param == "cluster":
        if not KUBECONFIG:
            pytest.skip("AFS_TEST_KUBECONFIG is not set: these scenarios ran on the emulator only")
        async with _cluster(KUBECONFIG) as where:
            yield where
    else:
        async with _emulator(kmock) as where:
            yield where


@contextlib.asynccontextmanager
async def _operator(api: Api) -> AsyncIterator[None]:
    config = OperatorConfig(poll_seconds=0.5, database_retry_seconds=2.0)
    registry = make_registry(config, api.kube, metrics=OperatorMetrics())
    kopf.on.login(registry=registry)(api.login)
    ready, stop = asyncio.Event(), asyncio.Event()
    scope: dict[str, Any] = (
        {"clusterwide": True} if api.emulated else {"namespaces": [api.namespace]}
    )
    task = asyncio.create_task(
        kopf.operator(registry=registry, standalone=True, ready_flag=ready, stop_flag=stop, **scope)
    )
    await asyncio.wait_for(ready.wait(), 30)
    try:
        yield
    finally:
        await stop_operator(task, stop)


def _loop(database: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "LearningLoop",
        "metadata": {"name": "nayru"},
        "spec": {
            "model": {"name": "nayru-v1"}, "database": database, "checkInterval": "1s",
            "training": {"template": restricted({"name": "trainer", "image": "trainer:1"})},
        },
    }  # fmt: skip


def _ready(obj: dict[str, Any]) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


MODEL_VERSION: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion",
    "metadata": {"name": "nayru-v1",
                 "annotations": {"continuous.afs.dev/initial-stage": "Champion"}},
    "spec": {"model": "nayru", "version": "v1", "uri": "s3://models/nayru/v1/"},
}  # fmt: skip


async def test_a_model_version_gets_the_stage_it_was_created_for(api: Api) -> None:
    async with _operator(api):
        await api.create("modelversions", copy.deepcopy(MODEL_VERSION))
        stage = await _eventually(
            lambda: (api.get("modelversions", "nayru-v1").get("status") or {}).get("stage"),
            timeout=60,
        )
    assert stage == "Champion"


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        (None, "not found"),
        (
            "unreachable",
            "the URL in Secret ml/usage-db key url cannot be reached: connection refused",
        ),
    ],
    ids=["no-secret", "unreachable"],
)
async def test_a_loop_without_its_database_says_so_in_a_condition_the_server_keeps(
    api: Api, secret: str | None, says: str
) -> None:
    """The condition is written through the status subresource and read back whole: a
    real API server would prune a field the CRD does not declare."""
    if secret is not None:
        await api.secret("usage-db", unreachable_url(password="s3cret"))
    async with _operator(api):
        await api.create(
            "learningloops", _loop({"urlSecretRef": {"name": "usage-db", "key": "url"}})
        )
        ready = await _eventually(
            lambda: (
                (r := _ready(api.get("learningloops", "nayru"))) and r["status"] == "False" and r
            )
        )
    assert ready["reason"] == "DatabaseUnavailable" and says in ready["message"]
    assert "s3cret" not in ready["message"]
    assert set(ready) >= {"type", "status", "reason", "message", "lastTransitionTime"}


ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    "metadata": {"name": "nayru"},
    "spec": {
        "parentRefs": [{"name": "gateway"}],
        "rules": [{"backendRefs": [{"name": "nayru-v1", "port": 80},
                                   {"name": "nayru-v2", "port": 80, "weight": 0}]}],
    },
}  # fmt: skip
ABTEST: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "ABTest",
    "metadata": {"name": "nayru-v2"},
    "spec": {
        "champion": {"modelVersion": "nayru-v1"}, "challenger": {"modelVersion": "nayru-v2"},
        "traffic": {"provider": "gateway-api", "targetRef": {
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "name": "nayru"}},
        "steps": [{"weight": 50}],
        "database": {"urlSecretRef": {"name": "usage-db", "key": "url"}},
    },
}  # fmt: skip


def _version(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": name},
        "spec": {"model": "nayru", "version": name, "uri": f"s3://models/{name}/"},
    }  # fmt: skip


def _weights(api: Api) -> list[int | None]:
    route = api.kube.custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", api.namespace, "httproutes", "nayru"
    )
    return [ref.get("weight") for ref in route["spec"]["rules"][0]["backendRefs"]]


async def test_an_abtest_shifts_the_routes_weights_and_gives_them_back_when_deleted(
    api: Api,
) -> None:
    """JSON patches with ``test`` operations on a route, as the API server applies them;
    the deletion waits for the operator's finalizer, which restores the weights."""
    gateway = "httproutes.gateway.networking.k8s.io"
    if not api.emulated and not await api.call(_has_crd, api, gateway):
        pytest.skip("the cluster has no Gateway API CRDs (HTTPRoute): nothing to shift")
    # a database it can read: a test that cannot read its records moves no traffic
    with fresh_schema() as url:
        await api.secret("usage-db", url)
        await _shift_and_delete(api)


async def _shift_and_delete(api: Api) -> None:
    async with _operator(api):
        for name in ("nayru-v1", "nayru-v2"):
            await api.create("modelversions", _version(name))
        route = copy.deepcopy(ROUTE)
        route["metadata"]["namespace"] = api.namespace
        await api.call(
            api.kube.custom.create_namespaced_custom_object, "gateway.networking.k8s.io", "v1",
            api.namespace, "httproutes", route,
        )  # fmt: skip
        await api.create("abtests", copy.deepcopy(ABTEST))
        await _eventually(lambda: _weights(api) == [50, 50], timeout=60)
        await api.call(
            api.kube.custom.delete_namespaced_custom_object, GROUP, VERSION, api.namespace,
            "abtests", "nayru-v2",
        )  # fmt: skip
        await _eventually(lambda: _absent(api, "abtests", "nayru-v2"), timeout=60)
        # read while the operator runs, as the emulator's other scenarios do
        assert await api.call(_weights, api) == [None, 0]


def _has_crd(api: Api, name: str) -> bool:
    try:
        k8s.ApiextensionsV1Api(api.kube.core.api_client).read_custom_resource_definition(name)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True  # found


def _absent(api: Api, plural: str, name: str) -> bool:
    return api.kube.get_custom_object(plural, api.namespace, name) is None


def test_what_the_scenarios_create_passes_the_crds_as_an_api_server_would_check_it() -> None:
    from tests.kube.test_crds import _validator

    loop = _loop({"urlSecretRef": {"name": "usage-db", "key": "url"}})
    _validator("LearningLoop").validate(loop)
    _validator("ModelVersion").validate(MODEL_VERSION)
    _validator("ModelVersion").validate(_version("nayru-v2"))
    _validator("ABTest").validate(ABTEST)
