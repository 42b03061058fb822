"""Privacy: personal data and secrets redacted before they reach a training set (or the
database), and dataset membership, which makes erasure and lineage answerable.

Redaction needs the ``privacy`` extra (Microsoft Presidio); its configuration does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from afs.continuous.privacy.settings import (
    DEFAULT_ENTITIES,
    KNOWN_ENTITIES,
    NAMED_ENTITIES,
    SECRET_ENTITIES,
    STRUCTURED_ENTITIES,
    RedactionConfig,
    RedactionError,
)

if TYPE_CHECKING:
    from afs.continuous.privacy.redactor import RedactionReport, Redactor

__all__ = [
    "DEFAULT_ENTITIES",
    "KNOWN_ENTITIES",
    "NAMED_ENTITIES",
    "SECRET_ENTITIES",
    "STRUCTURED_ENTITIES",
    "RedactionConfig",
    "RedactionError",
    "RedactionReport",
    "Redactor",
]


def __getattr__(name: str) -> Any:  # Presidio is imported only when a redactor is made
    if name in ("Redactor", "RedactionReport"):
        from afs.continuous.privacy import redactor

        return getattr(redactor, name)
    raise AttributeError(name)
