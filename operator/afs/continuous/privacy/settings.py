"""What redaction does, as configuration: importable without Presidio, so a config file,
a CRD or ``DataGeneratorConfig`` can name it on a machine that only validates it.

The entity names are Presidio's (``EMAIL_ADDRESS``, ``PHONE_NUMBER``…) plus ours for
secrets; ``<ENTITY_TYPE>`` is what replaces a value by default.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, Strict, field_validator
from pydantic.dataclasses import dataclass

from afs.continuous.errors import ContinuousError

#: Presidio's pattern recognizers that need no language model
STRUCTURED_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "URL",
    "CRYPTO",
)
#: our recognizers of credentials pasted into prompts
SECRET_ENTITIES = (
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "GITHUB_TOKEN",
    "SLACK_TOKEN",
    "OPENAI_API_KEY",
    "JWT",
    "PRIVATE_KEY",
    "BEARER_TOKEN",
    "URL_PASSWORD",
    "PASSWORD",
)
#: what a spaCy pipeline's named entities become (only with ``spacy_model``)
NAMED_ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION", "NRP")
DEFAULT_ENTITIES = STRUCTURED_ENTITIES + SECRET_ENTITIES
KNOWN_ENTITIES = DEFAULT_ENTITIES + NAMED_ENTITIES

#: the environment variable the ``hash`` operator reads its key from, by default
DEFAULT_KEY_ENV = "AFS_REDACTION_KEY"

Operator = Literal["replace", "hash", "drop"]


class RedactionError(ContinuousError, ValueError):
    """Redaction cannot run as configured (no key for ``hash``, a missing spaCy model,
    the ``privacy`` extra not installed)."""


@dataclass(config=ConfigDict(extra="forbid", frozen=True))
class RedactionConfig:
    """Which personal data and secrets are redacted, and how.

    ``operator``: ``replace`` writes ``<ENTITY_TYPE>`` in the value's place; ``hash``
    writes ``<ENTITY_TYPE_0123456789>``, a keyed hash (HMAC-SHA256 with the key in the
    environment variable ``key_env``), so the same value gives the same token everywhere
    and a conversation stays coherent, while no one without the key can test a guess;
    ``drop`` leaves out any record in which something was found (exports only).
    ``entities``: the types to look for (None: :data:`DEFAULT_ENTITIES`; person names
    and places need ``spacy_model``, an installed spaCy pipeline's name or directory;
    nothing is ever downloaded). ``score_threshold``: Presidio's confidence below which
    a match is ignored. ``allow``: values never redacted (a support address, say).
    """

    entities: tuple[str, ...] | None = None
    operator: Operator = "replace"
    key_env: str = DEFAULT_KEY_ENV
    score_threshold: Annotated[float, Strict(), Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.3
    spacy_model: str | None = None
    allow: tuple[str, ...] = ()

    @field_validator("entities")
    @classmethod
    def _known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("names no entity type (omit it for the default set)")
        unknown = [name for name in value if name not in KNOWN_ENTITIES]
        if unknown:
            raise ValueError(
                f"unknown entity type {', '.join(unknown)}; known: {', '.join(KNOWN_ENTITIES)}"
            )
        return tuple(dict.fromkeys(value))

    @property
    def chosen_entities(self) -> tuple[str, ...]:
        if self.entities is not None:
            return self.entities
        return DEFAULT_ENTITIES + (NAMED_ENTITIES if self.spacy_model else ())

    def key(self) -> bytes | None:
        """The hash operator's key from the environment (None for the other operators)."""
        if self.operator != "hash":
            return None
        value = os.environ.get(self.key_env, "")
        if len(value) < 16:
            raise RedactionError(
                f"the hash operator needs a key of at least 16 characters in the environment "
                f"variable {self.key_env} ({'too short' if value else 'not set'})"
            )
        return value.encode()

    def fingerprint(self) -> str:
        """A hash of everything that decides the output, the key included only as its own
        keyed fingerprint: two exports with the same fingerprint redacted alike."""
        key = self.key()
        data = {
            "entities": list(self.chosen_entities),
            "operator": self.operator,
            "score_threshold": self.score_threshold,
            "spacy_model": self.spacy_model,
            "allow": sorted(self.allow),
            "key": None if key is None else hmac.new(key, b"afs-key-id", "sha256").hexdigest(),
            "rules": RULES_VERSION,
        }
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


#: raised whenever a recognizer changes what it finds: part of the fingerprint
RULES_VERSION = 1


def parse_entities(text: str) -> tuple[str, ...]:
    """``EMAIL_ADDRESS,PHONE_NUMBER`` (a command line's ``--redact-entities``)."""
    names = tuple(part.strip().upper() for part in text.split(",") if part.strip())
    if not names:
        raise RedactionError("--redact-entities names no entity type")
    return names
