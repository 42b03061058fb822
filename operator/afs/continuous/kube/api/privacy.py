"""The privacy parts of our resources: how a loop's exports are redacted, and what a
run's export found (in the run's status and the ModelVersion's lineage)."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from afs.continuous.kube.api.base import KubeModel, SecretKeyRef
from afs.continuous.privacy.settings import DEFAULT_ENTITIES, RedactionConfig

ENTITY_NAME = re.compile(r"^[A-Z_]{1,40}$")
Tally = Annotated[int, Field(ge=0)]


class DatasetRedaction(KubeModel):
    """Personal data and secrets redacted in the loop's data sets (on unless disabled):
    the exporter runs ``afs-continuous export --redact``."""

    enabled: bool = True
    entities: Annotated[list[str], Field(min_length=1, max_length=len(DEFAULT_ENTITIES))] | None = (
        None
    )
    """The entity types (default: every pattern type; person names need a spaCy model,
    which the exporter image does not carry)."""
    operator: Literal["replace", "hash", "drop"] = "replace"
    key_secret_ref: SecretKeyRef | None = None
    """For ``hash``: the Secret key holding the hash key (at least 16 characters)."""

    @field_validator("entities")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        unknown = [name for name in value or [] if name not in DEFAULT_ENTITIES]
        if unknown:
            raise ValueError(
                f"unknown entity type {', '.join(unknown)}; known: {', '.join(DEFAULT_ENTITIES)}"
            )
        return value

    @model_validator(mode="after")
    def _key_for_hash(self) -> Self:
        if self.operator == "hash" and self.key_secret_ref is None:
            raise ValueError("operator hash needs keySecretRef (the Secret key with the hash key)")
        if self.operator != "hash" and self.key_secret_ref is not None:
            raise ValueError("keySecretRef is for operator hash: set it too, or remove it")
        return self

    def to_config(self) -> RedactionConfig | None:
        if not self.enabled:
            return None
        return RedactionConfig(
            entities=None if self.entities is None else tuple(self.entities),
            operator=self.operator,
        )


class RedactionSummary(KubeModel):
    """What the export's redaction found (from the exporter's report)."""

    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    operator: Literal["replace", "hash", "drop"]
    entities: dict[str, Tally] = Field(default_factory=dict, max_length=len(DEFAULT_ENTITIES))
    """Values replaced, per entity type."""
    records_redacted: Tally = 0
    records_dropped: Tally = 0

    @field_validator("entities")
    @classmethod
    def _entity_names(cls, value: dict[str, int]) -> dict[str, int]:
        # checked here, not as patternProperties: a structural schema has none
        for name in value:
            if not ENTITY_NAME.match(name):
                raise ValueError(f"{name!r} is not an entity type")
        return value
