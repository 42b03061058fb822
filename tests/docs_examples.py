"""Pull fenced code blocks out of Markdown documents, by section heading."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_HEADING = re.compile(r"^(#{1,6}) (.+)$", re.M)


def section(path: Path, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or higher level.

    Lines inside fenced code blocks are never headings (``# comment`` in Python).
    """
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    in_fence = False
    start = level = None
    for index, line in enumerate(lines):
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        match = None if in_fence else _HEADING.match(line.rstrip("\n"))
        if match is None:
            continue
        depth = len(match.group(1))
        if start is not None and level is not None and depth <= level:
            return "".join(lines[start:index])
        if start is None and match.group(2).strip() == heading:
            start, level = index + 1, depth
    if start is None:
        raise LookupError(f"{path.name}: no heading {heading!r}")
    return "".join(lines[start:])


def code_blocks(text: str, language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(text) if lang == language]
