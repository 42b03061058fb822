"""The base of our resources' models: camelCase on the wire, unknown fields refused,
and the references every kind shares."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

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


class SecretKeyRef(KubeModel):
    name: Annotated[str, Field(min_length=1)]
    key: Annotated[str, Field(min_length=1)]


class LocalObjectReference(KubeModel):
    name: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
