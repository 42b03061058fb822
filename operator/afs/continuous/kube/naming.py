"""Deterministic names: the same loop and run always give the same child names, so a
restarted operator finds (and never duplicates) what it created before."""

from __future__ import annotations

import hashlib
import re

_MAX = 63
_INVALID = re.compile(r"[^a-z0-9-]+")


def dns_label(text: str) -> str:
    """A DNS-1123 label: lowercase, [a-z0-9-], at most 63 characters; long or altered
    names keep a hash suffix so two different inputs never collide."""
    cleaned = _INVALID.sub("-", text.lower()).strip("-") or "x"
    if cleaned == text and len(text) <= _MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned[: _MAX - 9].rstrip('-')}-{digest}"


def run_name(loop: str, run: int) -> str:
    """The Job (and ModelVersion) of a loop's run: ``<loop>-run-<n>``."""
    return dns_label(f"{loop}-run-{run}")


def loop_state_key(namespace: str, loop: str) -> str:
    """Where a loop keeps its trigger state in the usage database."""
    return f"k8s/{namespace}/{loop}"
