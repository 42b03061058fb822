"""Number types for command-line options, shared by every command.

Each refuses what its option cannot use — not a number, NaN, infinity, out of its
range, a number of thousands of digits — with one line naming the range, so no value
gets far enough to fail later as a traceback (an ``OverflowError`` in a date, a server
that cannot bind, a loop that never ends).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

_WHOLE = re.compile(r"[+-]?\d{1,30}")
_REAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,4})?")

#: the largest count a flag or a resource's field takes (beyond, databases' integers overflow)
MAX_COUNT = 1_000_000_000
#: a year of seconds: the longest wait or interval any option means
MAX_SECONDS = 366 * 24 * 3600.0


class NumberError(argparse.ArgumentTypeError, ValueError):
    """A value refused by one of these types: argparse shows its message as it is; code
    that reads the same setting from an environment variable catches a ValueError."""


def shown(text: str) -> str:
    """``text`` quoted, cut short when long (a value of thousands of digits)."""
    return repr(text) if len(text) <= 32 else f"{text[:24]!r}… ({len(text)} characters)"


def _plain(number: float) -> str:
    return f"{int(number):,}" if number == int(number) else f"{number:g}"


def whole_number(low: int, high: int, *, what: str = "a whole number") -> Callable[[str], int]:
    """An integer in [low, high]."""

    def convert(text: str) -> int:
        stripped = text.strip()
        if not _WHOLE.fullmatch(stripped) or not low <= (value := int(stripped)) <= high:
            raise NumberError(f"must be {what} from {low:,} to {high:,}, got {shown(text)}")
        return value

    return convert


def real_number(
    low: float, high: float, *, low_open: bool = False, what: str = "a number"
) -> Callable[[str], float]:
    """A finite number in [low, high] (``low_open``: greater than ``low``)."""
    lower = "more than" if low_open else "from"

    def convert(text: str) -> float:
        stripped = text.strip()
        value = float(stripped) if _REAL.fullmatch(stripped) else math.nan
        inside = (low < value if low_open else low <= value) and value <= high
        if not inside:  # also NaN and infinity
            raise NumberError(
                f"must be {what} {lower} {_plain(low)} to {_plain(high)}, got {shown(text)}"
            )
        return value

    return convert


#: a TCP port, 0 where the option says 0 turns the listener off
port = whole_number(0, 65535, what="a port")
#: a listening port that must be given
listen_port = whole_number(1, 65535, what="a port")
#: a count of things, 0 allowed
count = whole_number(0, MAX_COUNT)
#: a count of things, at least one
positive_count = whole_number(1, MAX_COUNT)
#: a wait or an interval
positive_seconds = real_number(0, MAX_SECONDS, low_open=True, what="a number of seconds")
