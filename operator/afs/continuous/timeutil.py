"""Timestamps: always timezone-aware UTC, stored as fixed-width ISO-8601 text.

A fixed width (microseconds always present, ``Z`` suffix) makes lexicographic order
equal to chronological order, so time-window filters run on a plain text index.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from afs.continuous.errors import InvalidFieldError

Clock = Callable[[], datetime]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """Naive datetimes are read as local time, the convention of ``datetime.now()``."""
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = to_utc(value)
    # isoformat with fixed microseconds is several times faster than strftime; in UTC
    # it always ends in "+00:00", which is cheaper to cut than to build a naive copy
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_timestamp(value: str | datetime, *, field: str = "timestamp") -> datetime:
    """Accept an aware or naive datetime or an ISO-8601 string; return aware UTC."""
    try:
        if isinstance(value, datetime):
            return to_utc(value)
        if isinstance(value, str):
            try:
                return to_utc(datetime.fromisoformat(value.strip()))
            except ValueError:
                pass
    except OverflowError:  # 0001-01-01T00:00+01:00 is a year 0 in UTC
        raise InvalidFieldError(
            field, value, "is outside the dates a timestamp can hold (years 1 to 9999 in UTC)"
        ) from None
    raise InvalidFieldError(field, value, "must be an ISO-8601 timestamp or a datetime")


def normalize_timestamp(value: str | datetime, *, field: str = "timestamp") -> str:
    """The stored form of a timestamp; already-canonical strings pass through cheaply."""
    if isinstance(value, datetime) and value.tzinfo is UTC:
        return format_timestamp(value)
    if isinstance(value, str) and len(value) == 27 and value[-1] == "Z" and value[10] == "T":
        try:
            datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    return format_timestamp(parse_timestamp(value, field=field))


def parse_since(value: str | datetime, *, now: datetime, field: str = "since") -> datetime:
    """Like :func:`parse_timestamp`, but also accepts a look-back such as ``24h`` or ``7d``."""
    if isinstance(value, str):
        match = _RELATIVE.match(value)
        if match:
            amount, unit = float(match.group(1)), _UNITS[match.group(2)]
            try:
                return to_utc(now) - timedelta(**{unit: amount})
            except OverflowError:
                raise InvalidFieldError(
                    field, value, "reaches back before the calendar starts"
                ) from None
    try:
        return parse_timestamp(value, field=field)
    except InvalidFieldError:
        raise InvalidFieldError(
            field,
            value,
            "must be an ISO-8601 time (2026-11-30T08:00:00Z) or a look-back "
            "such as 90m, 24h, 7d, 2w",
        ) from None
