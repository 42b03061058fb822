"""Label selectors as Kubernetes evaluates them, and the labels a copied pod keeps."""

from __future__ import annotations

from typing import Any

import pytest

from afs.continuous.kube.selectors import copied_pod_labels, matches, named_keys

POD = {"app": "nayru", "version": "v1", "tier": "model"}


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ({"app": "nayru"}, True),
        ({"app": "nayru", "version": "v2"}, False),
        ({}, False),
        ({"matchLabels": {"app": "nayru"}}, True),
        ({"matchExpressions": [{"key": "version", "operator": "In", "values": ["v1", "v2"]}]},
         True),
        ({"matchExpressions": [{"key": "version", "operator": "NotIn", "values": ["v1"]}]},
         False),
        ({"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
        ({"matchLabels": {"app": "nayru"},
          "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
    ],
    ids=["service", "service-other-version", "empty", "match-labels", "in", "not-in",
         "does-not-exist", "exists", "both"],
)  # fmt: skip
def test_selectors_select_as_kubernetes_does(selector: dict[str, Any], selected: bool) -> None:
    assert matches(selector, POD) is selected


def test_the_keys_a_selector_needs() -> None:
    selector = {
        "matchLabels": {"app": "nayru"},
        "matchExpressions": [
            {"key": "tier", "operator": "Exists"},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    }
    assert named_keys(selector) == {"app", "tier"}


def test_a_copy_keeps_only_what_no_champion_selector_names() -> None:
    labels = copied_pod_labels(
        {**POD, "team": "ml"},
        selectors=[("Service nayru", {"app": "nayru"}), ("Service other", {"team": "search"})],
        ours={"model-version": "v2"},
    )  # fmt: skip
    assert labels == {"version": "v1", "tier": "model", "team": "ml", "model-version": "v2"}


def test_a_selector_the_champion_matches_by_what_it_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="Deployment nayru's selector would select"):
        copied_pod_labels(
            POD, ours={"model-version": "v2"},
            selectors=[("Deployment nayru's selector",
                        {"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]})],
        )  # fmt: skip
