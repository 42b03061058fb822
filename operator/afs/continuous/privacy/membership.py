"""Dataset membership: which records went into which exported data set, kept compactly
enough to record at every export, so erasure and lineage can be answered.

A data set's members are stored as one sorted array of 64-bit keys (the first 8 bytes
of BLAKE2b of each record id): 8 bytes per exported record, whatever the id's length,
no index, and found by binary search. A key of an erased record stays (it says nothing
about the record, and is how "which models learned from it" stays answerable).
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DatasetEntry:
    """One exported data set: where it went and what trained on it."""

    dataset_id: str
    created_at: str
    output: str
    format_type: str
    record_count: int
    sha256: str | None = None
    model_version: str | None = None
    """What trained on it: a local version's name, or ``namespace/name`` of a ModelVersion."""
    redaction: dict[str, Any] | None = None
    members: bytes = field(default=b"", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "created_at": self.created_at,
            "output": self.output,
            "format_type": self.format_type,
            "record_count": self.record_count,
            "sha256": self.sha256,
            "model_version": self.model_version,
            "redaction": self.redaction,
        }


def member_key(record_id: str) -> int:
    digest = hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def encode_members(record_ids: Iterable[str]) -> bytes:
    """The members' keys, sorted, as little-endian unsigned 64-bit integers."""
    keys = array("Q", sorted({member_key(record_id) for record_id in record_ids}))
    if sys.byteorder != "little":
        keys.byteswap()
    return keys.tobytes()


def _decode(blob: bytes) -> array[int]:
    keys = array("Q")
    keys.frombytes(blob)
    if sys.byteorder != "little":
        keys.byteswap()
    return keys


def members_in(blob: bytes, keys: Sequence[int]) -> list[int]:
    """Those of ``keys`` that are members of the data set stored as ``blob``."""
    stored = _decode(blob)
    found = []
    for key in keys:
        at = bisect_left(stored, key)
        if at < len(stored) and stored[at] == key:
            found.append(key)
    return found


def member_count(blob: bytes) -> int:
    return len(blob) // 8
