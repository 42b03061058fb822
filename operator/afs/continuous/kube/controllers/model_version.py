"""The ModelVersion controller: check the spec, give the version the stage its creator
meant (or Candidate). Stages change later only through ABTests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from afs.continuous.kube import promotion
from afs.continuous.kube.api.v1alpha1 import ModelVersionStatus
from afs.continuous.kube.controllers.shared import EventSink


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
