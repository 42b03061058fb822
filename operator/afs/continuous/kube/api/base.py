"""The base of our resources' models: camelCase on the wire, unknown fields refused,
the bounded value types every kind uses, and the references they share."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from afs.continuous.argtypes import MAX_COUNT as MAX_COUNT  # the largest count any setting names

#: the longest span any setting may name: ten years (beyond, dates leave the calendar)
MAX_HOURS = 87_600.0

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Hours = Annotated[float, Field(ge=0.0, le=MAX_HOURS)]
PositiveHours = Annotated[float, Field(gt=0.0, le=MAX_HOURS)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


def _bounded_duration(text: str) -> str:
    amount, unit = float(text[:-1]), text[-1]
    hours = amount * {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "d": 24.0}[unit]
    if hours > MAX_HOURS:
        raise ValueError(f"must be at most {MAX_HOURS / 24:.0f}d")
    return text


#: a duration such as "30s", "15m", "1h", "7d" (at most ten years)
Duration = Annotated[
    str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(s|m|h|d)$"), AfterValidator(_bounded_duration)
]

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class KubeModel(BaseModel):
    """camelCase on the wire, unknown fields refused (a typo is an error, not a no-op)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> Self:
        """Our part of a status another writer shares (kopf keeps its own keys there); an
        unreadable one starts afresh instead of wedging the handler."""
        keys = {info.alias or name for name, info in cls.model_fields.items()}
        try:
            return cls.model_validate({k: v for k, v in (status or {}).items() if k in keys})
        except ValidationError as exc:
            logging.getLogger(__name__).warning("unreadable %s replaced: %s", cls.__name__, exc)
            return cls()


def check_pod_template(template: dict[str, Any], role: str) -> dict[str, Any]:
    """A pod template whose first container is the ``role`` (the trainer, the evaluator):
    containers must be there, each named and with an image."""
    spec = template.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list) or not containers:
        raise ValueError(f"spec.containers must list the {role} container")
    for index, container in enumerate(containers):
        if not isinstance(container, dict):
            raise ValueError(f"spec.containers.{index} must be an object")
        for key in ("name", "image"):
            if not isinstance(container.get(key), str) or not container[key]:
                raise ValueError(f"spec.containers.{index}.{key} must be a non-empty string")
    return template


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """A status condition, the Kubernetes way."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class SecretKeyRef(KubeModel):
    name: Annotated[str, Field(min_length=1)]
    key: Annotated[str, Field(min_length=1)]


class LocalObjectReference(KubeModel):
    name: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
