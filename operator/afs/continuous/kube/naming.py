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


_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def dns_1035_label(text: str) -> str:
    """A DNS-1035 label (a DNS-1123 label that starts with a letter), for the names a
    provider's CRD or webhook holds to that rule (KServe's predictor names); altered
    names keep a hash suffix, as :func:`dns_label`'s do."""
    if len(text) <= _MAX and _DNS_1035.match(text):
        return text
    label = dns_label(text)
    if not label[0].isalpha():
        label = dns_label(f"v-{text}")
    return label


def is_dns_1035_label(text: str) -> bool:
    return len(text) <= _MAX and bool(_DNS_1035.match(text))
