"""One scenario set for every traffic provider: the same ABTest controller, the real kopf
and ``kubernetes`` client against the emulator, each provider's serving object in the
shape its documentation gives. A promotion, a rollback that gives back the exact original
object (apart from our record), drift written back, and the restore on deletion."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kmock
import pytest

from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION
from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.routing import RECORD_ANNOTATION
from tests.conftest import FakeClock
from tests.kube.emulator import ApiServerEmulator
from tests.kube.test_abtest_scenarios import (
    _abtest,
    _condition,
    _counting,
    _phase,
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

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(120)]

Weights = list[int | None]


@dataclass(frozen=True)
class Provider:
    name: str
    group: str
    version: str
    plural: str
    kind: str
    make: Callable[[], dict[str, Any]]
    """The serving object, the arms at their original weights beside other traffic."""
    weights: Callable[[dict[str, Any]], Weights]
    """The arms' weights in it (champion, challenger)."""
    drift: list[dict[str, Any]]
    """Someone else's JSON patch moving the arms to 90/10."""
    route_name: str | None = None
    label: str = ""
    """The scenario's name, where one provider has several shapes (KServe's modes)."""
    restored: Callable[[], dict[str, Any]] | None = None
    """What a rollback leaves, where it is not exactly the original (default: ``make``)."""
    traffic: dict[str, Any] | None = None
    """More of the ABTest's ``spec.traffic``."""

    @property
    def id(self) -> str:
        return self.label or self.name

    def after_rollback(self) -> dict[str, Any]:
        return (self.restored or self.make)()

    @property
    def target(self) -> dict[str, Any]:
        return {"apiVersion": f"{self.group}/{self.version}", "kind": self.kind, "name": "nayru"}


def _meta() -> dict[str, Any]:
    return {"name": "nayru", "namespace": NAMESPACE}


def _http_route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": _meta(),
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
             "backendRefs": [{"name": "admin", "port": 80}]},
            {"backendRefs": [{"name": "nayru-v1", "port": 80},
                             {"name": "nayru-v2", "port": 80, "weight": 0}]},
        ]},
    }  # fmt: skip


def _virtual_service() -> dict[str, Any]:
    """Istio's traffic-shifting shape: one host, a subset per version, a named route."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": _meta(),
        "spec": {"hosts": ["nayru"], "http": [
            {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
             "route": [{"destination": {"host": "admin"}}]},
            {"name": "models", "route": [
                {"destination": {"host": "nayru", "subset": "nayru-v1"}, "weight": 100},
                {"destination": {"host": "nayru", "subset": "nayru-v2"}, "weight": 0},
            ], "retries": {"attempts": 3}},
        ]},
    }  # fmt: skip


def _traffic_split() -> dict[str, Any]:
    """Linkerd's SMI shape: the apex service and one backend Service per version."""
    return {
        "apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit", "metadata": _meta(),
        "spec": {"service": "nayru", "backends": [
            {"service": "nayru-v1", "weight": 100}, {"service": "nayru-v2", "weight": 0},
        ]},
    }  # fmt: skip


def _knative_service() -> dict[str, Any]:
    """Knative's traffic-splitting shape: both revisions pinned, the challenger tagged."""
    return {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": _meta(),
        "spec": {
            "template": {"metadata": {"name": "nayru-v2"},
                         "spec": {"containers": [{"image": "registry/nayru:2"}]}},
            "traffic": [
                {"revisionName": "nayru-v1", "percent": 100},
                {"revisionName": "nayru-v2", "percent": 0, "tag": "challenger"},
                {"latestRevision": True, "percent": 0, "tag": "latest"},
            ],
        },
    }  # fmt: skip


def _knative_champion_only() -> dict[str, Any]:
    """A Knative Service serving the champion's revision alone: the test makes the
    challenger's (``traffic.createRevision``)."""
    return {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": _meta(),
        "spec": {
            "template": {"spec": {"containers": [{"image": "registry/nayru:1"}]}},
            "traffic": [{"revisionName": "nayru-v1", "percent": 100}],
        },
    }  # fmt: skip


def _knative_after_the_test() -> dict[str, Any]:
    """The traffic block as it was; the template stays the challenger's revision."""
    obj = _knative_champion_only()
    obj["spec"]["template"] = {
        "metadata": {"name": "nayru-v2"},
        "spec": {"containers": [{"image": "registry/nayru:1", "env": [
            {"name": "AFS_MODEL_URI", "value": "s3://models/nayru-v2"},
            {"name": "AFS_MODEL_VERSION", "value": "nayru-v2"},
        ]}]},
    }  # fmt: skip
    return obj


def _revision_percents(obj: dict[str, Any]) -> Weights:
    by_name = {t.get("revisionName"): t.get("percent") for t in obj["spec"]["traffic"]}
    return [by_name.get("nayru-v1"), by_name.get("nayru-v2")]


def _inference_service(*, raw: bool = False) -> dict[str, Any]:
    """KServe's predictor shape, serving the champion's ModelVersion ``uri``."""
    metadata = _meta()
    if raw:
        metadata["annotations"] = {"serving.kserve.io/deploymentMode": "RawDeployment"}
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": {"minReplicas": 1, "model": {
            "modelFormat": {"name": "sklearn"}, "storageUri": "s3://models/nayru-v1",
            "resources": {"limits": {"cpu": "1"}},
        }}},
    }  # fmt: skip


def _serverless_rolled_back() -> dict[str, Any]:
    """A Serverless rollback keeps ``canaryTrafficPercent: 0`` (see the router's notes), and
    the restored model says it is the champion's."""
    obj = _inference_service()
    obj["spec"]["predictor"]["canaryTrafficPercent"] = 0
    obj["spec"]["predictor"]["model"]["env"] = [
        {"name": "AFS_MODEL_URI", "value": "s3://models/nayru-v1"},
        {"name": "AFS_MODEL_VERSION", "value": "nayru-v1"},
    ]
    return obj


def _kserve_weights(obj: dict[str, Any]) -> Weights:
    """Champion and challenger shares, whichever mode the object is in."""
    predictor = obj["spec"]["predictor"]
    for entry in obj["spec"].get("canary") or []:
        if entry["predictor"]["name"] == "nayru-v2":
            return [100 - entry["trafficPercent"], entry["trafficPercent"]]
    if predictor["model"]["storageUri"] != "s3://models/nayru-v2":
        return [100, 0]
    canary = predictor.get("canaryTrafficPercent", 100)
    return [100 - canary, canary]


def _replace(*paths: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"op": "replace", "path": path, "value": value} for path, value in paths]


PROVIDERS = [
    Provider(
        "gateway-api", "gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute",
        _http_route,
        lambda o: [ref.get("weight") for ref in o["spec"]["rules"][1]["backendRefs"]],
        _replace(("/spec/rules/1/backendRefs/0/weight", 90),
                 ("/spec/rules/1/backendRefs/1/weight", 10)),
    ),
    Provider(
        "istio", "networking.istio.io", "v1", "virtualservices", "VirtualService",
        _virtual_service,
        lambda o: [r.get("weight") for r in o["spec"]["http"][1]["route"]],
        _replace(("/spec/http/1/route/0/weight", 90), ("/spec/http/1/route/1/weight", 10)),
        route_name="models",
    ),
    Provider(
        "knative", "serving.knative.dev", "v1", "services", "Service",
        _knative_service,
        lambda o: [t.get("percent") for t in o["spec"]["traffic"][:2]],
        _replace(("/spec/traffic/0/percent", 90), ("/spec/traffic/1/percent", 10)),
    ),
    Provider(
        "knative", "serving.knative.dev", "v1", "services", "Service",
        _knative_champion_only, _revision_percents,
        _replace(("/spec/traffic/0/percent", 90), ("/spec/traffic/1/percent", 10)),
        label="knative-create-revision", restored=_knative_after_the_test,
        traffic={"createRevision": True},
    ),
    Provider(
        "smi", "split.smi-spec.io", "v1alpha2", "trafficsplits", "TrafficSplit",
        _traffic_split,
        lambda o: [b.get("weight") for b in o["spec"]["backends"]],
        _replace(("/spec/backends/0/weight", 90), ("/spec/backends/1/weight", 10)),
    ),
    Provider(
        "kserve", "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService",
        _inference_service, _kserve_weights,
        _replace(("/spec/predictor/canaryTrafficPercent", 10)),
        label="kserve-serverless", restored=_serverless_rolled_back,
    ),
    Provider(
        "kserve", "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService",
        lambda: _inference_service(raw=True), _kserve_weights,
        _replace(("/spec/canary/0/trafficPercent", 10)),
        label="kserve-raw",
    ),
]  # fmt: skip


@pytest.fixture
def usage_db() -> Any:
    with fresh_schema() as url:
        yield url


def register_providers(kmock: kmock.KubernetesEmulator) -> None:
    """The operator's resources and every provider's serving kind, in the emulator."""
    _register(kmock)
    for p in PROVIDERS:
        info = kmock.resources[f"{p.group}/{p.version}/{p.plural}"]
        info.kind, info.namespaced = p.kind, True
        info.verbs = {"list", "watch", "get", "create", "patch", "update", "delete"}


@pytest.fixture(params=PROVIDERS, ids=[p.id for p in PROVIDERS])
def provider(request: pytest.FixtureRequest, kmock: kmock.KubernetesEmulator) -> Provider:
    register_providers(kmock)
    chosen: Provider = request.param
    return chosen


def _test_for(provider: Provider, **spec: Any) -> dict[str, Any]:
    traffic: dict[str, Any] = {"provider": provider.name, "targetRef": provider.target}
    if provider.route_name is not None:
        traffic["routeName"] = provider.route_name
    traffic.update(provider.traffic or {})
    return _abtest(traffic=traffic, **spec)


async def _start(kube: KubeClient, url: str, provider: Provider, **spec: Any) -> None:
    await _database_secret(kube, url)
    for name in ("nayru-v1", "nayru-v2"):
        await _call(kube.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE,
                    "modelversions", _version(name))  # fmt: skip
    await _call(kube.custom.create_namespaced_custom_object, provider.group, provider.version,
                NAMESPACE, provider.plural, provider.make())  # fmt: skip
    await _call(kube.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE,
                "abtests", _test_for(provider, **spec))  # fmt: skip


def _live(kube: KubeClient, provider: Provider) -> dict[str, Any]:
    obj: dict[str, Any] = kube.custom.get_namespaced_custom_object(
        provider.group, provider.version, NAMESPACE, provider.plural, "nayru"
    )
    return obj


def _without_our_record(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as its owner wrote it: server fields and our annotation left out."""
    plain = copy.deepcopy(obj)
    metadata = plain["metadata"]
    annotations = metadata.pop("annotations", {}) or {}
    annotations.pop(RECORD_ANNOTATION, None)
    if annotations:
        metadata["annotations"] = annotations
    for key in ("resourceVersion", "uid", "generation", "creationTimestamp", "managedFields"):
        metadata.pop(key, None)
    return plain


async def test_a_better_challenger_is_promoted(
    provider: Provider, kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    async with operator(kmock, clock=clock) as kube:
        await _start(kube, usage_db, provider)
        start = await _counting(kube)
        assert provider.weights(await _call(_live, kube, provider)) == [50, 50]
        _traffic(usage_db, start, arms={"nayru-v1": (300, 0.6), "nayru-v2": (300, 0.8)})
        clock.advance(hours=3)
        status = await _eventually(_phase(kube, "Promoted"))
        assert status["verdict"] == "PROMOTE"
        live = await _call(_live, kube, provider)
        assert provider.weights(live) == [0, 100]
        record = json.loads(live["metadata"]["annotations"][RECORD_ANNOTATION])
        assert record["phase"] == "Promoted"
        # nothing of the ABTest (routeName included) would be pruned by a real API server
        assert await _call(lambda: _pruned_in_a_cluster(kube, expect="ABTest")) == []


async def test_a_rollback_gives_back_the_exact_original_object(
    provider: Provider, kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    async with operator(kmock, clock=clock) as kube:
        await _start(kube, usage_db, provider)
        start = await _counting(kube)
        _traffic(usage_db, start, arms={"nayru-v1": (300, 0.7), "nayru-v2": (300, 0.5)})
        clock.advance(hours=3)
        await _eventually(_phase(kube, "RolledBack"))
        live = await _call(_live, kube, provider)
        assert _without_our_record(live) == provider.after_rollback()


async def test_drift_is_written_back_and_deletion_restores(
    provider: Provider, kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    async with operator(kmock, clock=clock) as kube:
        await _start(kube, usage_db, provider)
        await _counting(kube)
        await _call(kube.custom.patch_namespaced_custom_object, provider.group,
                    provider.version, NAMESPACE, provider.plural, "nayru",
                    provider.drift)  # fmt: skip
        await _eventually(lambda: provider.weights(_live(kube, provider)) == [50, 50])
        await _call(kube.custom.delete_namespaced_custom_object, GROUP, VERSION, NAMESPACE,
                    "abtests", "nayru-v2")  # fmt: skip
        await _eventually(lambda: _get_custom(kube, "abtests", "nayru-v2") is None)
        assert _without_our_record(await _call(_live, kube, provider)) == provider.after_rollback()


async def test_a_target_that_cannot_carry_the_test_is_named_and_left_alone(
    kmock: kmock.KubernetesEmulator, usage_db: str, clock: FakeClock
) -> None:
    """A KServe predictor running a custom container has no model URI to switch."""
    (kserve,) = [p for p in PROVIDERS if p.id == "kserve-serverless"]
    register_providers(kmock)
    custom = _inference_service()
    custom["spec"]["predictor"] = {"containers": [{"image": "registry/nayru:1"}]}
    unsupported = Provider(**{**kserve.__dict__, "make": lambda: copy.deepcopy(custom)})
    async with operator(kmock, clock=clock) as kube:
        await _start(kube, usage_db, unsupported)
        status = await _eventually(
            lambda: (
                _condition(s := _status(kube), "Ready").get("reason") == "UnsupportedTarget" and s
            )
        )
        assert "custom container" in _condition(status, "Ready")["message"]
        assert _without_our_record(await _call(_live, kube, unsupported)) == custom
