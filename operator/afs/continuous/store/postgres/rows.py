"""The usage table's columns, the COPY statement, and rows read back as records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from afs.continuous.records import (
    UsageRecord,
)
from afs.continuous.store.base import RECORD_COLUMNS as RECORD_COLUMNS
from afs.continuous.timeutil import format_timestamp

_STREAM_BATCH = 2000


_COPY = f"COPY usage ({RECORD_COLUMNS}) FROM STDIN (FORMAT BINARY)"
"""Binary: a third of the client's formatting time of text COPY, and less parsing for
the server (the two share the machine's cores while a batch streams)."""
_COPY_TYPES = (
    "text", "timestamptz", "text", "text", "text", "text", "float8",
    "int4", "float8", "int2", "text", "text", "text", "bool", "text", "text", "text",
)  # fmt: skip
"""The columns' types in :data:`RECORD_COLUMNS` order, as binary COPY must be told."""


def _record(row: Sequence[Any]) -> UsageRecord:
    values = list(row)
    values[1] = format_timestamp(values[1])
    return UsageRecord(*values)
