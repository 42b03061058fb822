"""The ModelVersion controller: check the spec, give the version the stage its creator
meant (or Candidate); stages change later only through ABTests. In deploy mode
(``spec.serving``) it also keeps the version's Deployment and Service (see
:mod:`afs.continuous.kube.serving`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from afs.continuous.kube import planning, promotion, serving
from afs.continuous.kube.api.v1alpha1 import ModelVersionSpec, ModelVersionStatus
from afs.continuous.kube.client import KubeApiError, KubeClient
from afs.continuous.kube.controllers.shared import EventSink
from afs.continuous.kube.pod_security import Level
from afs.continuous.timeutil import Clock, utc_now


def record_model_version(
    *,
    spec: dict[str, Any],
    status: dict[str, Any],
    annotations: dict[str, str],
    generation: int | None,
    now: datetime,
    event: EventSink,
) -> ModelVersionStatus:
    new = promotion.model_version_status(
        spec=spec, status=status, annotations=annotations, now=now, generation=generation
    )
    ready = next(c for c in new.conditions if c.type == "Ready")
    if ready.reason == "InvalidSpec":
        event("Warning", "InvalidSpec", ready.message)
    elif new.stage is not None and status.get("stage") != new.stage.value:
        event("Normal", "Stage", f"stage {new.stage.value}")
    return new


@dataclass
class ServingReconciler:
    """Deploy mode for one ModelVersion: reads its Deployment and Service (and the one
    ``copyFrom`` names, when it must create), lets :func:`serving.plan_serving` decide,
    writes, and returns the status to show."""

    kube: KubeClient
    clock: Clock = utc_now
    level: Level = "restricted"
    """The operator's pod security level, which the Deployment's pods must meet."""

    def reconcile(
        self,
        *,
        name: str,
        namespace: str,
        uid: str,
        generation: int | None,
        spec: dict[str, Any],
        status: dict[str, Any],
        event: EventSink,
    ) -> ModelVersionStatus:
        current = ModelVersionStatus.from_status(status)
        try:
            parsed = ModelVersionSpec.model_validate(spec)
        except ValidationError:
            return current  # the create/update handler reports the spec
        if parsed.serving is None:
            return current
        now = self.clock()
        try:
            plan = self._plan(name, namespace, uid, parsed, current, now)
            for manifest in plan.create:
                self.kube.create_workload(manifest)
            if plan.scale_to_zero:
                self.kube.scale_deployment(namespace, name, 0)
            if plan.delete:
                self.kube.delete_workload(namespace, name)
        except KubeApiError as exc:
            plan = serving.ServingPlan(
                status=current.serving, available=(False, "KubernetesApiError", str(exc))
            )
        for kind, reason, message in plan.events:
            event(kind, reason, message)
        ready, reason, message = plan.available
        refusals = ("InvalidName", "InvalidServing", "InvalidSpec", "NameTaken")
        if reason in refusals and _reason(current) != reason:
            event("Warning", reason, message)
        current.serving = plan.status
        current.conditions = planning.set_condition(
            current.conditions, type="Available", status=ready, reason=reason,
            message=message, now=now, generation=generation,
        )  # fmt: skip
        return current

    def _plan(
        self,
        name: str,
        namespace: str,
        uid: str,
        spec: ModelVersionSpec,
        current: ModelVersionStatus,
        now: datetime,
    ) -> serving.ServingPlan:
        deployment = self.kube.get_deployment(namespace, name)
        service = self.kube.get_service(namespace, name)
        assert spec.serving is not None
        source_name = spec.serving.copy_from
        source = None
        services: list[dict[str, Any]] = []
        if deployment is None and source_name is not None:  # only read to create
            source = self.kube.get_deployment(namespace, source_name)
            services = self.kube.list_services(namespace)
        return serving.plan_serving(
            version=name, namespace=namespace, uid=uid, spec=spec, stage=current.stage,
            current=current.serving, deployment=deployment, service=service, source=source,
            now=now, level=self.level, services=services,
        )  # fmt: skip


def _reason(status: ModelVersionStatus) -> str | None:
    return next((c.reason for c in status.conditions if c.type == "Available"), None)
