"""Stable train / validation / test splits, and what a split's file is called.

A record's split follows from a key alone, never from the other records: its assignment
key (a user, a session) when it has one, else its conversation's opening (the first user
turn and what came before it), else its content (the dedupe hash of its query and
response; the record's id when it has none). So one user's or one conversation's records
never straddle two sets, the same exchange logged twice without a user lands in one set
(not half held out, half trained on), and a record once in ``test`` stays there as data
grows — no test item ever becomes training data in a later run, as long as the ratios
stay the same (changing them moves the boundaries: documented, not hidden).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any, Literal, TypeVar

from afs.continuous.conversations import chain
from afs.continuous.errors import InvalidFieldError

SplitName = Literal["train", "validation", "test"]
AnyPath = TypeVar("AnyPath", bound=PurePath)
SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")
#: the held-out sets an evaluation gate uses when the data set's config names none
DEFAULT_EVALUATION_SPLIT = (0.9, 0.05, 0.05)
#: the ratios' sum may be off by rounding, no more
_TOLERANCE = 1e-6


def check_split(value: Any, *, field: str = "split") -> tuple[float, float, float]:
    """``(train, validation, test)`` fractions: three numbers in [0, 1] summing to 1, with
    some training data."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 3:
        raise InvalidFieldError(field, value, "must be three fractions: train, validation, test")
    for part in value:
        if isinstance(part, bool) or not isinstance(part, int | float) or not 0 <= part <= 1:
            raise InvalidFieldError(field, value, "each fraction must be a number in [0, 1]")
    if abs(sum(value) - 1.0) > _TOLERANCE:
        raise InvalidFieldError(field, value, f"must sum to 1 (they sum to {sum(value):g})")
    if value[0] <= 0:
        raise InvalidFieldError(field, value, "must leave some records for training")
    return (float(value[0]), float(value[1]), float(value[2]))


def parse_split(text: str) -> tuple[float, float, float]:
    """``0.9,0.05,0.05`` (a command line's ``--split``)."""
    try:
        parts = [float(part) for part in text.split(",")]
    except ValueError:
        raise InvalidFieldError(
            "--split", text, "must be three numbers such as 0.9,0.05,0.05"
        ) from None
    return check_split(parts, field="--split")


def split_key(
    *,
    record_id: str,
    assignment_hash: str | None,
    messages: Sequence[Mapping[str, Any]] | None,
    tools: Sequence[Mapping[str, Any]] | None,
    content_hash: str | None = None,
) -> str:
    """What decides a record's split (see the module's docstring)."""
    if assignment_hash:
        return f"a:{assignment_hash}"
    first = next((i for i, m in enumerate(messages or ()) if m.get("role") == "user"), None)
    if messages and first is not None:
        return f"c:{chain(messages[: first + 1], tools)[-1].hash}"
    if content_hash:
        return f"d:{content_hash}"
    return f"r:{record_id}"


def assign_split(key: str, ratios: tuple[float, float, float]) -> SplitName:
    """The split of ``key``: a uniform draw from its hash, test first, then validation."""
    digest = hashlib.sha256(b"afs-split\x00" + key.encode("utf-8", "surrogatepass")).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    _, validation, test = ratios
    if draw < test:
        return "test"
    if draw < test + validation:
        return "validation"
    return "train"


def split_path(output: AnyPath, split: SplitName) -> AnyPath:
    """``dataset.jsonl`` → ``dataset.test.jsonl`` (the training set keeps the name given)."""
    if split == "train":
        return output
    return output.with_name(f"{output.stem}.{split}{output.suffix or '.jsonl'}")
