"""Label selectors as Kubernetes evaluates them, and the labels a copied pod may keep.

Deploy mode with ``copyFrom`` runs the challenger from the champion's pod template. Kept
as they are, its labels (``app: nayru, version: v1``) put the challenger's pods behind
every Service that selects the champion's — the champion's own Service, a shared one, and
so every Istio subset and route that sends to them — and champion traffic reaches the
challenger. So a copied pod drops every label that a selector of the champion's pods
names; what no such selector names (``team``, ``sidecar.istio.io/inject``) stays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Selector = Mapping[str, Any]
"""A Service's selector (a plain map) or a LabelSelector (``matchLabels`` and
``matchExpressions``)."""


def _parts(selector: Selector) -> tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]:
    if "matchLabels" in selector or "matchExpressions" in selector:
        return selector.get("matchLabels") or {}, selector.get("matchExpressions") or []
    return selector, []


def matches(selector: Selector, labels: Mapping[str, str]) -> bool:
    """Whether ``selector`` selects a pod with ``labels``. An empty selector selects
    nothing here: a Service without one has no endpoints of its own choosing."""
    equal, expressions = _parts(selector)
    if not equal and not expressions:
        return False
    if any(labels.get(key) != value for key, value in equal.items()):
        return False
    for expression in expressions:
        key, operator = str(expression.get("key")), expression.get("operator")
        values = expression.get("values") or []
        value = labels.get(key)
        if operator == "In" and value not in values:
            return False
        if operator == "NotIn" and value is not None and value in values:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def named_keys(selector: Selector) -> set[str]:
    """The label keys ``selector`` needs a pod to carry."""
    equal, expressions = _parts(selector)
    return set(equal) | {
        str(e.get("key")) for e in expressions if e.get("operator") in ("In", "Exists")
    }


def copied_pod_labels(
    champion: Mapping[str, str],
    *,
    selectors: Sequence[tuple[str, Selector]],
    ours: Mapping[str, str],
    optional: Sequence[str] = (),
) -> dict[str, str]:
    """The labels of a pod copied from one labelled ``champion``: without every key that
    a selector of the champion's pods names, with ``ours``; ``optional`` keys of ours are
    left out too where they would match. ``selectors`` are (what, selector) pairs, the
    what naming it in the error. ValueError when no such labels exist (a selector the
    champion's pods match by what they lack, e.g. ``DoesNotExist``)."""
    theirs = [(what, s) for what, s in selectors if matches(s, champion)]
    named = set().union(*(named_keys(s) for _, s in theirs)) if theirs else set()
    labels = {k: v for k, v in champion.items() if k not in named}
    labels.update(ours)
    for key in optional:
        if any(matches(s, labels) for _, s in theirs):
            labels.pop(key, None)
    still = [what for what, s in theirs if matches(s, labels)]
    if still:
        raise ValueError(
            f"{', '.join(still)} would select the challenger's pods as well as the "
            "champion's whatever labels they drop; give the challenger a template of its "
            "own (serving.template)"
        )
    return labels
