"""What every command shares: exit codes, errors, output, argument types, ``--db`` and
``--json``."""

from __future__ import annotations

import argparse
import json
import math
from datetime import datetime
from typing import Any

from afs.continuous.argtypes import shown
from afs.continuous.store import DEFAULT_DB_PATH
from afs.continuous.timeutil import parse_since, utc_now

EXIT_OK, EXIT_NOT_FOUND, EXIT_INVALID = 0, 1, 2


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_INVALID) -> None:
        super().__init__(message)
        self.code = code


def since_arg(value: str | None, *, field: str = "since") -> datetime | None:
    return None if value is None else parse_since(value, now=utc_now(), field=field)


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(finite(data), indent=2, default=str, allow_nan=False) if args.json else text)


def finite(data: Any) -> Any:
    """JSON has no Infinity or NaN (a sum of huge latencies overflows to inf): null."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


def feedback_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 99
    if value not in (-1, 0, 1):
        raise argparse.ArgumentTypeError(f"feedback must be -1, 0 or 1, got {shown(text)}")
    return value


def common_options(*, top_level: bool) -> argparse.ArgumentParser:
    """``--db`` and ``--json``, accepted before or after the command.

    Subcommands get their own copies with suppressed defaults, so a value given before
    the command is not overwritten by the subcommand's default (argparse shares Action
    objects between parents, so one copy cannot serve both).
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", default=None if top_level else argparse.SUPPRESS,
        help="SQLite file, sqlite:/// or postgresql:// URL holding usage records (default: "
        f"$AFS_DATABASE_URL, else {DEFAULT_DB_PATH})",
    )  # fmt: skip
    common.add_argument(
        "--json", action="store_true", default=False if top_level else argparse.SUPPRESS,
        help="print JSON output",
    )  # fmt: skip
    return common
