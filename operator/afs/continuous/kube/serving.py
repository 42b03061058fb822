"""Deploy mode: the Deployment and Service that run one ModelVersion, and what becomes of
them as the version's stage changes. Pure functions; the ModelVersion controller reads
and writes.

Both are named like the ModelVersion (so an ABTest arm's backend, which defaults to the
version's name, is its Service), labelled with it, and owned by it: deleting the version
deletes them. A version that leaves the arms (Rejected, Retired) keeps running for
``scaleDownAfter`` — a promotion that turns out bad is undone at once, with the old
champion still warm — then is scaled to zero, and deleted ``deleteAfter`` later.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from afs.continuous.kube import planning, pod_security
from afs.continuous.kube.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    ModelVersionSpec,
    ServingSpec,
    ServingStatus,
    Stage,
)
from afs.continuous.kube.selectors import copied_pod_labels
from afs.continuous.timeutil import format_timestamp, parse_timestamp

MODEL_VERSION_LABEL = f"{GROUP}/model-version"
MANAGED_BY = ("app.kubernetes.io/managed-by", "afs-continuous")
MODEL_URI_ENV = "AFS_MODEL_URI"
MODEL_VERSION_ENV = "AFS_MODEL_VERSION"
_IDLE = (Stage.REJECTED, Stage.RETIRED)
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class ServingError(ValueError):
    """The version cannot be deployed as specified (the message says why)."""


def service_name(version: str) -> str:
    """The Deployment's and Service's name: the version's own, which must be a valid
    Service name (DNS-1035: lowercase letters, digits, '-', starting with a letter)."""
    if len(version) > 63 or not _DNS_1035.match(version):
        raise ServingError(
            f"ModelVersion name {version!r} cannot name a Service (DNS-1035 label: at most "
            "63 lowercase letters, digits and '-', starting with a letter)"
        )
    return version


def pod_template(serving: ServingSpec, source: dict[str, Any] | None) -> dict[str, Any]:
    """The pod template to run: the spec's own, or the one of the ``copyFrom`` Deployment."""
    if serving.template is not None:
        return copy.deepcopy(serving.template)
    if source is None:
        raise ServingError(f"serving.copyFrom: Deployment {serving.copy_from} not found")
    template = ((source.get("spec") or {}).get("template")) or {}
    containers = (template.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        raise ServingError(f"serving.copyFrom: Deployment {serving.copy_from} has no containers")
    return copy.deepcopy(template)


def champion_free_template(
    template: dict[str, Any],
    *,
    source: dict[str, Any],
    services: Sequence[dict[str, Any]],
    spec: ModelVersionSpec,
    version: str,
) -> dict[str, Any]:
    """The ``copyFrom`` template with labels that no selector of the champion's pods can
    match — the source Deployment's and every Service's in the namespace — so champion
    traffic never reaches the challenger (see :mod:`afs.continuous.kube.selectors`)."""
    pod = copy.deepcopy(template)
    metadata = pod.setdefault("metadata", {})
    source_name = (source.get("metadata") or {}).get("name", "")
    found: list[tuple[str, Any]] = [
        (f"Deployment {source_name}'s selector", (source.get("spec") or {}).get("selector") or {})
    ]
    found += [
        (f"Service {(svc.get('metadata') or {}).get('name')}", (svc.get("spec") or {})["selector"])
        for svc in services
        if isinstance((svc.get("spec") or {}).get("selector"), dict)
    ]
    try:
        metadata["labels"] = copied_pod_labels(
            metadata.get("labels") or {}, selectors=found, ours=_labels(spec, version),
            optional=("app.kubernetes.io/name", MANAGED_BY[0]),
        )  # fmt: skip
    except ValueError as exc:
        raise ServingError(f"serving.copyFrom: {exc}") from None
    return pod


def _owner(version: str, uid: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": API_VERSION, "kind": "ModelVersion", "name": version, "uid": uid,
         "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip


def _labels(spec: ModelVersionSpec, version: str) -> dict[str, str]:
    return {
        MODEL_VERSION_LABEL: version,
        "app.kubernetes.io/name": spec.model[:63],
        MANAGED_BY[0]: MANAGED_BY[1],
    }


def deployment_manifest(
    *,
    version: str,
    namespace: str,
    uid: str,
    spec: ModelVersionSpec,
    template: dict[str, Any],
    copied: bool = False,
) -> dict[str, Any]:
    """The Deployment of ``version``: the pod template with our labels and, in the model's
    container, where the model is and which version it is (the server logs under it)."""
    assert spec.serving is not None
    serving = spec.serving
    name = service_name(version)
    labels = _labels(spec, version)
    pod = copy.deepcopy(template)
    metadata = pod.setdefault("metadata", {})
    metadata.pop("name", None)
    if not copied:  # a copy's labels were chosen by champion_free_template
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    # a model server calls no Kubernetes API: no token unless the template asks for one
    pod["spec"].setdefault("automountServiceAccountToken", False)
    containers = pod["spec"]["containers"]
    wanted = serving.container
    model = next((c for c in containers if c.get("name") == wanted), None) if wanted else None
    if wanted and model is None:
        raise ServingError(f"serving.container: no container {wanted!r} in the pod template")
    model = model or containers[0]
    ours = {MODEL_URI_ENV: spec.uri, MODEL_VERSION_ENV: version}
    env = [e for e in model.get("env") or [] if e.get("name") not in ours]
    model["env"] = [*env, *({"name": k, "value": v} for k, v in ours.items())]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "ownerReferences": _owner(version, uid)},
        "spec": {
            "replicas": serving.replicas,
            "selector": {"matchLabels": {MODEL_VERSION_LABEL: version}},
            "template": pod,
        },
    }  # fmt: skip


def service_manifest(
    *, version: str, namespace: str, uid: str, spec: ModelVersionSpec
) -> dict[str, Any]:
    assert spec.serving is not None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(version), "namespace": namespace,
                     "labels": _labels(spec, version), "ownerReferences": _owner(version, uid)},
        "spec": {
            "selector": {MODEL_VERSION_LABEL: version},
            "ports": [{"name": "http", "port": spec.serving.service_port,
                       "targetPort": spec.serving.port, "protocol": "TCP"}],
        },
    }  # fmt: skip


def deployment_available(deployment: dict[str, Any]) -> tuple[bool, str]:
    """Available at its current generation, with every replica updated; else why not."""
    generation = (deployment.get("metadata") or {}).get("generation")
    status = deployment.get("status") or {}
    seen = status.get("observedGeneration")
    if isinstance(generation, int) and (not isinstance(seen, int) or seen < generation):
        return False, "the Deployment controller has not seen the latest generation yet"
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    if (status.get("updatedReplicas") or 0) < wanted:
        return False, f"{status.get('updatedReplicas') or 0} of {wanted} replicas updated"
    available = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Available"), None
    )
    if available is None or available.get("status") != "True":
        return False, (available or {}).get("message") or "not Available yet"
    return True, ""


@dataclass
class ServingPlan:
    """What to write for one version, and the status and condition to show."""

    status: ServingStatus | None
    available: tuple[bool, str, str]
    """The ``Available`` condition: status, reason, message."""
    create: list[dict[str, Any]] = field(default_factory=list)
    scale_to_zero: bool = False
    delete: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)


def plan_serving(
    *,
    version: str,
    namespace: str,
    uid: str,
    spec: ModelVersionSpec,
    stage: Stage | None,
    current: ServingStatus | None,
    deployment: dict[str, Any] | None,
    service: dict[str, Any] | None,
    source: dict[str, Any] | None,
    now: datetime,
    level: pod_security.Level = "restricted",
    services: Sequence[dict[str, Any]] = (),
) -> ServingPlan:
    """Create what is missing while the version may serve; once it is Rejected or Retired,
    scale it down after the grace period and delete it later. Never touch a Deployment
    or Service of its name that another owner holds, nor create one whose pods the
    operator's pod security ``level`` refuses (its own template or the one copied). A
    copy's pods keep none of the labels the champion's selectors (``services``: the
    namespace's Services) pick them by."""
    assert spec.serving is not None
    serving = spec.serving
    try:
        name = service_name(version)
    except ServingError as exc:
        return ServingPlan(status=None, available=(False, "InvalidName", str(exc)))
    for kind, obj in (("Deployment", deployment), ("Service", service)):
        if obj is not None and not planning.controlled_by(obj, uid):
            message = f"{kind} {namespace}/{name} exists and belongs to someone else"
            return ServingPlan(status=current, available=(False, "NameTaken", message))
    status = current or ServingStatus(deployment=name, service=name)
    if stage in _IDLE:
        return _wind_down(serving, status, deployment, service, stage, now)
    plan = ServingPlan(status=status, available=(False, "Creating", "creating"))
    if deployment is None:
        try:
            template = pod_template(serving, source)
            where = "serving.template" if serving.template is not None else (
                f"serving.copyFrom (Deployment {serving.copy_from}) spec.template"
            )  # fmt: skip
            found = pod_security.check_pod_template(template, level)
            refused = pod_security.refusal(pod_security.under(where, found), level)
            if refused is not None:
                return ServingPlan(status=status, available=(False, "InvalidSpec", refused))
            copied = source is not None and serving.copy_from is not None
            if copied:
                assert source is not None
                template = champion_free_template(
                    template, source=source, services=services, spec=spec, version=version
                )
            manifest = deployment_manifest(
                version=version, namespace=namespace, uid=uid, spec=spec, template=template,
                copied=copied,
            )  # fmt: skip
        except ServingError as exc:
            return ServingPlan(status=status, available=(False, "InvalidServing", str(exc)))
        plan.create.append(manifest)
        plan.events.append(("Normal", "Deploying", f"Deployment {name} created"))
    if service is None:
        plan.create.append(service_manifest(version=version, namespace=namespace, uid=uid,
                                            spec=spec))  # fmt: skip
    if deployment is not None:
        ready, why = deployment_available(deployment)
        status.available = ready
        plan.available = (
            (True, "Available", f"Deployment {name} is Available")
            if ready else (False, "Progressing", f"Deployment {name}: {why}")
        )  # fmt: skip
        if ready and (current is None or not current.available):
            plan.events.append(("Normal", "Available", f"Deployment {name} is Available"))
    return plan


def _wind_down(
    serving: ServingSpec,
    status: ServingStatus,
    deployment: dict[str, Any] | None,
    service: dict[str, Any] | None,
    stage: Stage,
    now: datetime,
) -> ServingPlan:
    status.available = False
    status.idle_since = status.idle_since or format_timestamp(now)
    plan = ServingPlan(status=status, available=(False, stage.value, ""))
    if deployment is None and service is None:
        plan.available = (False, "Deleted", f"{stage.value}: its Deployment and Service are gone")
        return plan
    if status.scaled_down is None:
        due = parse_timestamp(status.idle_since) + planning.parse_duration(serving.scale_down_after)
        if now < due:
            plan.available = (
                False, stage.value,
                f"{stage.value}: kept running until {format_timestamp(due)}, then scaled down",
            )  # fmt: skip
            return plan
        if deployment is not None:
            plan.scale_to_zero = True
            plan.events.append(("Normal", "ScaledDown", f"{stage.value}: scaled to zero"))
        status.scaled_down = format_timestamp(now)
    gone = parse_timestamp(status.scaled_down) + planning.parse_duration(serving.delete_after)
    if now >= gone:
        plan.delete = True
        plan.events.append(("Normal", "Deleted", f"{stage.value}: Deployment and Service deleted"))
        plan.available = (False, "Deleted", f"{stage.value}: its Deployment and Service are gone")
    else:
        when = format_timestamp(gone)
        plan.available = (False, "ScaledDown", f"{stage.value}: scaled to zero; deleted at {when}")
    return plan
