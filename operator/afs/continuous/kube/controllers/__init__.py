"""The operator's kopf handlers, all registered here and kept thin: one module per kind
(:mod:`.learning_loop`, :mod:`.abtest`, :mod:`.model_version`) does the work, each
handler writes the resulting status once."""

from __future__ import annotations

from typing import Any

import kopf

from afs.continuous.kube import rollout
from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION
from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.controllers.abtest import ABTestReconciler
from afs.continuous.kube.controllers.learning_loop import LoopReconciler
from afs.continuous.kube.controllers.model_version import ServingReconciler, record_model_version
from afs.continuous.kube.controllers.shared import EventSink, OperatorConfig, StorePool
from afs.continuous.kube.metrics import OperatorMetrics
from afs.continuous.store.postgres.failures import DriverLogFilter
from afs.continuous.timeutil import Clock, utc_now

__all__ = [
    "ABTestReconciler",
    "LoopReconciler",
    "OperatorConfig",
    "StorePool",
    "make_registry",
]


def _events(body: kopf.Body) -> EventSink:
    def event(kind: str, reason: str, message: str) -> None:
        (kopf.warn if kind == "Warning" else kopf.info)(body, reason=reason, message=message)

    return event


def make_registry(
    config: OperatorConfig,
    kube: KubeClient,
    *,
    clock: Clock = utc_now,
    metrics: OperatorMetrics | None = None,
) -> kopf.OperatorRegistry:
    """The operator's handlers, registered on a registry of their own (tests run several)."""
    registry = kopf.OperatorRegistry()
    metrics = metrics or OperatorMetrics()
    DriverLogFilter.install()  # the driver's log quotes the database URLs of Secrets
    stores = StorePool(config.database_retry_seconds, clock)
    loops = LoopReconciler(kube, config, stores, clock, metrics)
    tests = ABTestReconciler(kube, config, stores, clock, metrics)
    deployments = ServingReconciler(kube, clock, level=config.pod_security_level)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # progress in annotations: nothing kopf writes can be pruned by our status schema
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()

    @kopf.on.cleanup(registry=registry)
    def close_stores(**_: Any) -> None:
        stores.close()

    @kopf.timer(
        GROUP, VERSION, "learningloops", interval=config.poll_seconds,
        backoff=config.poll_seconds, registry=registry,
    )  # fmt: skip
    def reconcile_loop(
        name: str, namespace: str | None, uid: str, meta: kopf.Meta, spec: kopf.Spec,
        status: kopf.Status, body: kopf.Body, patch: kopf.Patch, **_: Any,
    ) -> None:  # fmt: skip
        assert namespace is not None  # LearningLoop is namespaced
        with metrics.reconcile_seconds.time():
            new = loops.reconcile(
                name=name, namespace=namespace, uid=uid, generation=meta.get("generation"),
                spec=dict(spec), status=dict(status), event=_events(body),
            )  # fmt: skip
        metrics.set_loop(namespace, name, new)
        # None stays in the patch: a merge patch deletes a key set to null (e.g. currentRun)
        patch.status.update(new.model_dump(by_alias=True, mode="json"))

    @kopf.on.delete(GROUP, VERSION, "learningloops", optional=True, registry=registry)
    def forget_deleted_loop(name: str, namespace: str | None, **_: Any) -> None:
        """A deleted loop's series go; optional: deletion never waits for the operator."""
        assert namespace is not None
        metrics.forget_loop(namespace, name)

    @kopf.timer(
        GROUP, VERSION, "abtests", interval=config.poll_seconds, backoff=config.poll_seconds,
        registry=registry,
    )  # fmt: skip
    def reconcile_abtest(
        name: str, namespace: str | None, uid: str, meta: kopf.Meta, spec: kopf.Spec,
        status: kopf.Status, body: kopf.Body, patch: kopf.Patch, **_: Any,
    ) -> None:  # fmt: skip
        assert namespace is not None
        with metrics.abtest_reconcile_seconds.time():
            outcome = tests.reconcile(
                name=name, namespace=namespace, uid=uid, generation=meta.get("generation"),
                spec=dict(spec), status=dict(status), annotations=dict(meta.annotations),
                owners=[dict(o) for o in meta.get("ownerReferences") or []],
                event=_events(body),
            )  # fmt: skip
        metrics.set_database(namespace, "ABTest", name, outcome.status.conditions)
        if outcome.consume_action:  # consumed once, in the same write as its effect
            patch.metadata.annotations[rollout.ACTION_ANNOTATION] = None
        patch.status.update(outcome.status.model_dump(by_alias=True, mode="json"))

    @kopf.on.delete(GROUP, VERSION, "abtests", registry=registry)
    def restore_deleted_abtest(
        name: str, namespace: str | None, uid: str, spec: kopf.Spec, status: kopf.Status,
        body: kopf.Body, **_: Any,
    ) -> None:  # fmt: skip
        assert namespace is not None
        tests.finalize(
            name=name, namespace=namespace, uid=uid, spec=dict(spec), status=dict(status),
            event=_events(body),
        )  # fmt: skip

    @kopf.on.resume(GROUP, VERSION, "modelversions", registry=registry)
    @kopf.on.create(GROUP, VERSION, "modelversions", registry=registry)
    @kopf.on.update(GROUP, VERSION, "modelversions", field="spec", registry=registry)
    def reconcile_model_version(
        meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, body: kopf.Body,
        patch: kopf.Patch, **_: Any,
    ) -> None:  # fmt: skip
        new = record_model_version(
            spec=dict(spec), status=dict(status), annotations=dict(meta.annotations),
            generation=meta.get("generation"), now=clock(), event=_events(body),
        )  # fmt: skip
        # the evaluation is the loop's to write (a null here would erase it)
        patch.status.update(new.model_dump(by_alias=True, mode="json", exclude={"evaluation"}))

    @kopf.timer(
        GROUP, VERSION, "modelversions", interval=config.poll_seconds,
        backoff=config.poll_seconds, field="spec.serving", value=kopf.PRESENT,
        registry=registry,
    )  # fmt: skip
    def reconcile_serving(
        name: str, namespace: str | None, uid: str, meta: kopf.Meta, spec: kopf.Spec,
        status: kopf.Status, body: kopf.Body, patch: kopf.Patch, **_: Any,
    ) -> None:  # fmt: skip
        assert namespace is not None
        new = deployments.reconcile(
            name=name, namespace=namespace, uid=uid, generation=meta.get("generation"),
            spec=dict(spec), status=dict(status), event=_events(body),
        )  # fmt: skip
        patch.status.update(
            new.model_dump(by_alias=True, mode="json", include={"serving", "conditions"})
        )

    return registry
