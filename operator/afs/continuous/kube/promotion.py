"""What a new ModelVersion goes on to, as pure functions: the ABTest that puts it against
the champion, and the stage a ModelVersion should show. The handlers do the I/O.

The loop cannot set a new ModelVersion's stage when it creates it (the API server ignores
``status`` on create when the status subresource is on), so it leaves the stage it means
in an annotation and the ModelVersion handler applies it once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from afs.continuous.kube import planning
from afs.continuous.kube.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    ModelVersionSpec,
    ModelVersionStatus,
    PromotionSpec,
    Stage,
)
from afs.continuous.kube.training import run_labels

INITIAL_STAGE = f"{GROUP}/initial-stage"


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line a user can act on: ``field.path: what is wrong``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def champion_of(promotion: PromotionSpec, current: str | None) -> str | None:
    """The loop's own champion once it has one; before that, the one the spec names."""
    return current or promotion.champion


def challenger_test(
    *,
    loop: str,
    namespace: str,
    uid: str | None,
    run: int,
    promotion: PromotionSpec,
    champion: str,
    challenger: str,
) -> dict[str, Any]:
    """The ABTest of a new version against the champion, named like the version (one
    test per challenger, so a restarted operator finds the test it created)."""
    assert promotion.traffic is not None
    settings = promotion.ab_test
    metadata: dict[str, Any] = {
        "name": challenger,
        "namespace": namespace,
        "labels": run_labels(loop, run),
    }
    if uid is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": API_VERSION, "kind": "LearningLoop", "name": loop, "uid": uid}
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": "ABTest",
        "metadata": metadata,
        "spec": {
            "champion": {"modelVersion": champion},
            "challenger": {"modelVersion": challenger},
            "traffic": promotion.traffic.model_dump(by_alias=True, exclude_none=True),
            "steps": [{"weight": round(settings.initial_challenger_traffic * 100)}],
            "decision": settings.model_dump(
                by_alias=True, mode="json", exclude={"initial_challenger_traffic"}
            ),
            "promotion": promotion.mode,
        },
    }


def model_version_status(
    *,
    spec: dict[str, Any],
    status: dict[str, Any],
    annotations: dict[str, str],
    now: datetime,
    generation: int | None,
) -> ModelVersionStatus:
    """A ModelVersion's status: its spec checked, and a stage it always has.

    A version without a stage takes the one its creator left in the annotation, else
    Candidate; a stage once set is never changed here (A/B tests move it)."""
    current = ModelVersionStatus.from_status(status)
    current.observed_generation = generation
    try:
        ModelVersionSpec.model_validate(spec)
    except ValidationError as exc:
        current.conditions = planning.set_condition(
            current.conditions, type="Ready", status=False, reason="InvalidSpec",
            message=validation_message(exc), now=now, generation=generation,
        )  # fmt: skip
        return current
    if current.stage is None:
        wanted = annotations.get(INITIAL_STAGE, Stage.CANDIDATE.value)
        current.stage = Stage(wanted) if wanted in Stage._value2member_map_ else Stage.CANDIDATE
    current.conditions = planning.set_condition(
        current.conditions, type="Ready", status=True, reason="Recorded",
        message=f"stage {current.stage.value}", now=now, generation=generation,
    )  # fmt: skip
    return current
