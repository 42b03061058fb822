"""The command-line options that ask for redaction (``export``, ``collect``), one set."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from afs.continuous.privacy.settings import DEFAULT_ENTITIES, parse_entities

_OPERATORS = {
    "replace": "replace with <TYPE> (default)",
    "hash": "a keyed hash (key in AFS_REDACTION_KEY)",
    "drop": "drop the sample",
}


def add_redaction_options(
    parser: argparse.ArgumentParser, *, what: str, operators: Sequence[str]
) -> None:
    """``--redact``, ``--redact-entities`` and ``--redact-operator`` (the latter two imply
    the first); ``what`` says what is redacted, ``operators`` which ones make sense."""
    parser.add_argument(
        "--redact", action="store_true",
        help=f"redact personal data and secrets {what} (needs the privacy extra)",
    )  # fmt: skip
    parser.add_argument(
        "--redact-entities", metavar="TYPES",
        help="comma-separated entity types to redact (implies --redact; default: "
        f"{','.join(DEFAULT_ENTITIES)})",
    )  # fmt: skip
    parser.add_argument(
        "--redact-operator", choices=list(operators),
        help=", ".join(_OPERATORS[o] for o in operators) + " (implies --redact)",
    )  # fmt: skip


def redaction_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``RedactionConfig`` values the options ask for; None when they ask for none."""
    if not (args.redact or args.redact_entities or args.redact_operator):
        return None
    values: dict[str, Any] = {}
    if args.redact_entities:
        values["entities"] = parse_entities(args.redact_entities)
    if args.redact_operator:
        values["operator"] = args.redact_operator
    return values
