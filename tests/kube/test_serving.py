"""Deploy mode as pure functions: the Deployment and Service of a ModelVersion, when each
is created, and how a version that left the arms winds down."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from afs.continuous.kube.api.v1alpha1 import ModelVersionSpec, ServingSpec, ServingStatus, Stage
from afs.continuous.kube.selectors import matches
from afs.continuous.kube.serving import (
    MODEL_VERSION_LABEL,
    ServingError,
    deployment_available,
    deployment_manifest,
    plan_serving,
    pod_template,
    service_manifest,
    service_name,
)
from tests.kube.pods import restricted

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
UID = "mv-uid"
TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "ml"}},
    **restricted(
        {"name": "server", "image": "registry/nayru-server:1.4",
         "env": [{"name": "LOG_LEVEL", "value": "info"},
                 {"name": "AFS_MODEL_URI", "value": "s3://stale"}]},
        {"name": "sidecar", "image": "registry/proxy:2"},
    ),
}  # fmt: skip


def _spec(**serving: Any) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(
        {"model": "nayru", "version": "run-3", "uri": "s3://models/nayru/run-3/",
         "serving": {"template": TEMPLATE, **serving}}
    )  # fmt: skip


def _deployment(*, ready: bool = True, generation: int = 1, uid: str = UID) -> dict[str, Any]:
    return {
        "metadata": {"name": "nayru-run-3", "generation": generation,
                     "ownerReferences": [{"uid": uid}]},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "updatedReplicas": 1, "conditions": [
            {"type": "Available", "status": "True" if ready else "False",
             "message": "" if ready else "Deployment does not have minimum availability."}]},
    }  # fmt: skip


def _service(uid: str = UID) -> dict[str, Any]:
    return {"metadata": {"name": "nayru-run-3", "ownerReferences": [{"uid": uid}]}}


def _plan(**kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "version": "nayru-run-3", "namespace": "ml", "uid": UID, "spec": _spec(),
        "stage": Stage.CHALLENGER, "current": None, "deployment": None, "service": None,
        "source": None, "now": NOW,
    }  # fmt: skip
    arguments.update(kwargs)
    return plan_serving(**arguments)


def test_the_deployment_runs_the_template_with_the_model_s_uri_and_version() -> None:
    manifest = deployment_manifest(
        version="nayru-run-3", namespace="ml", uid=UID, spec=_spec(), template=TEMPLATE
    )
    server, sidecar = manifest["spec"]["template"]["spec"]["containers"]
    assert server["env"] == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "AFS_MODEL_URI", "value": "s3://models/nayru/run-3/"},
        {"name": "AFS_MODEL_VERSION", "value": "nayru-run-3"},
    ]
    assert "env" not in sidecar
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "ml" and labels[MODEL_VERSION_LABEL] == "nayru-run-3"
    assert manifest["spec"]["selector"] == {"matchLabels": {MODEL_VERSION_LABEL: "nayru-run-3"}}
    (owner,) = manifest["metadata"]["ownerReferences"]
    assert owner["kind"] == "ModelVersion" and owner["uid"] == UID and owner["controller"]
    assert TEMPLATE["spec"]["containers"][0]["env"][1]["value"] == "s3://stale"  # not mutated


def test_the_named_container_is_the_model_s() -> None:
    spec = _spec(container="sidecar")
    manifest = deployment_manifest(
        version="nayru-run-3", namespace="ml", uid=UID, spec=spec, template=TEMPLATE
    )
    sidecar = manifest["spec"]["template"]["spec"]["containers"][1]
    assert [e["name"] for e in sidecar["env"]] == ["AFS_MODEL_URI", "AFS_MODEL_VERSION"]


def test_the_service_selects_the_version_s_pods() -> None:
    manifest = service_manifest(
        version="nayru-run-3", namespace="ml", uid=UID, spec=_spec(port=9000)
    )
    assert manifest["spec"]["selector"] == {MODEL_VERSION_LABEL: "nayru-run-3"}
    assert manifest["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 9000, "protocol": "TCP"}
    ]


def test_copy_from_takes_the_champion_s_pod_template() -> None:
    serving = ServingSpec.model_validate({"copyFrom": "nayru-run-2"})
    source = {"spec": {"template": TEMPLATE}}
    assert pod_template(serving, source) == TEMPLATE
    with pytest.raises(ServingError, match="Deployment nayru-run-2 not found"):
        pod_template(serving, None)
    with pytest.raises(ServingError, match="has no containers"):
        pod_template(serving, {"spec": {"template": {"spec": {}}}})


@pytest.mark.parametrize(
    ("serving", "message"),
    [
        ({}, "exactly one of template and copyFrom"),
        ({"template": TEMPLATE, "copyFrom": "x"}, "exactly one of template and copyFrom"),
        ({"template": {"spec": {}}}, "template.spec.containers"),
        ({"template": TEMPLATE, "container": "missing"}, "container 'missing'"),
        ({"copyFrom": "x", "replicas": 0}, "replicas"),
        ({"copyFrom": "x", "scaleDownAfter": "soon"}, "scaleDownAfter"),
    ],
    ids=["neither", "both", "no-containers", "unknown-container", "no-replicas", "bad-duration"],
)
def test_an_invalid_serving_spec_is_refused_by_field(serving: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServingSpec.model_validate(serving)


@pytest.mark.parametrize(
    "name", ["3-nayru", "Nayru", "nayru.v3", "n" * 64], ids=["digit", "upper", "dot", "long"]
)
def test_a_version_name_that_cannot_name_a_service_is_refused(name: str) -> None:
    with pytest.raises(ServingError, match="cannot name a Service"):
        service_name(name)
    plan = _plan(version=name)
    assert plan.available[1] == "InvalidName" and not plan.create


@pytest.mark.parametrize(
    ("deployment", "ready", "why"),
    [
        (_deployment(), True, ""),
        (_deployment(ready=False), False, "minimum availability"),
        (_deployment(generation=2), False, "latest generation"),
        ({"metadata": {"generation": 1}, "spec": {"replicas": 2},
          "status": {"observedGeneration": 1, "updatedReplicas": 1}}, False, "1 of 2"),
    ],
    ids=["available", "unavailable", "old-generation", "rolling"],
)  # fmt: skip
def test_availability_is_read_at_the_current_generation(
    deployment: dict[str, Any], ready: bool, why: str
) -> None:
    available, message = deployment_available(deployment)
    assert available is ready and why in message


def test_what_is_missing_is_created_once() -> None:
    plan = _plan()
    assert [m["kind"] for m in plan.create] == ["Deployment", "Service"]
    assert plan.available[:2] == (False, "Creating")
    plan = _plan(deployment=_deployment(ready=False), service=_service())
    assert plan.create == [] and plan.available[:2] == (False, "Progressing")
    plan = _plan(deployment=_deployment(), service=_service())
    assert plan.create == [] and plan.available[:2] == (True, "Available")
    assert plan.status.available and plan.events[0][1] == "Available"
    again = _plan(deployment=_deployment(), service=_service(), current=plan.status)
    assert again.events == []  # said once


def test_a_copy_source_that_is_missing_is_named() -> None:
    spec = ModelVersionSpec.model_validate(
        {"model": "nayru", "version": "run-3", "uri": "s3://m", "serving": {"copyFrom": "gone"}}
    )
    plan = _plan(spec=spec)
    assert plan.available[1] == "InvalidServing" and "gone" in plan.available[2]
    assert plan.create == []


@pytest.mark.parametrize("kind", ["deployment", "service"])
def test_another_owner_s_objects_are_left_alone(kind: str) -> None:
    objects = {"deployment": _deployment(), "service": _service()}
    objects[kind] = _deployment(uid="other") if kind == "deployment" else _service("other")
    plan = _plan(stage=Stage.REJECTED, now=NOW + timedelta(days=9), **objects)
    assert plan.available[1] == "NameTaken"
    assert not plan.create and not plan.scale_to_zero and not plan.delete


@pytest.mark.parametrize(
    ("hours", "scale", "delete", "reason"),
    [(0.5, False, False, "Rejected"), (1.0, True, False, "ScaledDown")],
    ids=["in-grace", "grace-over"],
)
def test_a_rejected_version_keeps_running_for_its_grace_then_scales_down(
    hours: float, scale: bool, delete: bool, reason: str
) -> None:
    idle = ServingStatus(deployment="nayru-run-3", service="nayru-run-3", available=True,
                         idle_since="2026-12-01T12:00:00.000000Z")  # fmt: skip
    plan = _plan(stage=Stage.REJECTED, current=idle, deployment=_deployment(), service=_service(),
                 now=NOW + timedelta(hours=hours))  # fmt: skip
    assert (plan.scale_to_zero, plan.delete, plan.available[1]) == (scale, delete, reason)
    assert plan.create == [] and plan.status.available is False


def test_a_version_seen_idle_first_starts_its_grace_now() -> None:
    plan = _plan(stage=Stage.RETIRED, deployment=_deployment(), service=_service())
    assert plan.status.idle_since == "2026-12-01T12:00:00.000000Z" and not plan.scale_to_zero


def test_a_scaled_down_version_is_deleted_later_and_never_recreated() -> None:
    down = ServingStatus(deployment="nayru-run-3", service="nayru-run-3",
                         idle_since="2026-12-01T10:00:00.000000Z",
                         scaled_down="2026-12-01T11:00:00.000000Z")  # fmt: skip
    plan = _plan(stage=Stage.RETIRED, current=down, deployment=_deployment(), service=_service(),
                 now=NOW + timedelta(hours=23))  # fmt: skip
    assert plan.delete and plan.available[1] == "Deleted"
    gone = _plan(stage=Stage.RETIRED, current=down, now=NOW + timedelta(days=2))
    assert not gone.create and not gone.delete and gone.available[1] == "Deleted"


# --- copyFrom: no selector of the champion's pods selects the challenger's ---------------

CHAMPION_POD: dict[str, Any] = {
    "metadata": {"labels": {"app": "nayru", "version": "v1", "tier": "model", "team": "ml",
                            "sidecar.istio.io/inject": "true"}},
    **restricted({"name": "server", "image": "registry/nayru-server:1.4"}),
}  # fmt: skip
SOURCE: dict[str, Any] = {
    "metadata": {"name": "nayru-v1"},
    "spec": {"selector": {"matchLabels": {"app": "nayru", "version": "v1"}},
             "template": CHAMPION_POD},
}  # fmt: skip
NAMESPACE_SERVICES: list[dict[str, Any]] = [
    {"metadata": {"name": name}, "spec": {"selector": selector}}
    for name, selector in [
        ("nayru", {"app": "nayru"}),                      # shared host (Istio subsets)
        ("nayru-v1", {"app": "nayru", "version": "v1"}),  # the champion's own
        ("models", {"tier": "model"}),                    # every model server
        ("search", {"team": "search"}),                   # another team's
        ("headless", None),                               # endpoints of its own choosing
    ]
]  # fmt: skip
#: an Istio DestinationRule on host nayru: subset name → labels
SUBSETS = {"v1": {"version": "v1"}, "stable": {"tier": "model"}}


def test_a_copied_challenger_is_behind_no_service_or_subset_of_the_champion_s() -> None:
    plan = _plan(spec=_spec_copying(), source=SOURCE, services=NAMESPACE_SERVICES)
    [deployment] = [m for m in plan.create if m["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["metadata"]["labels"]
    champion = CHAMPION_POD["metadata"]["labels"]
    for service in NAMESPACE_SERVICES:
        selector = service["spec"]["selector"]
        if selector and matches(selector, champion):
            assert not matches(selector, pod), service["metadata"]["name"]
    host = NAMESPACE_SERVICES[0]["spec"]["selector"]
    for subset, labels in SUBSETS.items():  # a subset's pods are its host's, with its labels
        assert not (matches(host, pod) and matches(labels, pod)), subset
    assert matches(deployment["spec"]["selector"]["matchLabels"], pod)  # its own Deployment's
    assert not matches(SOURCE["spec"]["selector"], pod)
    assert pod["team"] == "ml" and pod["sidecar.istio.io/inject"] == "true"  # kept


def test_a_copy_no_labels_can_keep_out_of_the_champion_s_selector_is_refused() -> None:
    source = copy.deepcopy(SOURCE)
    source["spec"]["selector"] = {
        "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]
    }
    plan = _plan(spec=_spec_copying(), source=source, services=[])
    assert plan.create == []
    ready, reason, message = plan.available
    assert (ready, reason) == (False, "InvalidServing")
    assert message.startswith("serving.copyFrom: Deployment nayru-v1's selector would select")


def _spec_copying() -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(
        {"model": "nayru", "version": "run-3", "uri": "s3://models/nayru/run-3/",
         "serving": {"copyFrom": "nayru-v1"}}
    )  # fmt: skip
