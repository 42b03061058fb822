"""Exceptions raised by afs.continuous.

Every rejection of caller input is an :class:`InvalidFieldError`, a ``ValueError``
subclass that names the offending field and value, so callers that already catch
``ValueError`` keep working and callers that want precision can read ``.field``.
"""

from __future__ import annotations

from typing import Any

_MAX_REPR = 80


class ContinuousError(Exception):
    """Base class for errors specific to afs.continuous."""


class InvalidFieldError(ContinuousError, ValueError):
    """A value given for ``field`` breaks a rule; nothing was written."""

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        shown = repr(value)
        if len(shown) > _MAX_REPR:
            shown = f"{shown[:_MAX_REPR]}… ({len(shown)} characters)"
        super().__init__(f"{field} {rule}, got {shown}")


class InvalidBatchError(ContinuousError, ValueError):
    """One item of a batch is invalid; the whole batch was rejected and nothing written."""

    def __init__(self, index: int, cause: InvalidFieldError, *, label: str = "record") -> None:
        self.index = index
        self.cause = cause
        super().__init__(f"{label} {index}: {cause}")


class SchemaVersionError(ContinuousError):
    """The database was written by a newer afs-continuous than this one."""


class SampleFormatError(ContinuousError, ValueError):
    """A line of an existing training-data file is not a sample in a known format."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {problem}")
