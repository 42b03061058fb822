"""The provider-schema check itself can fail: a deliberately broken object of each
provider is refused by the check that owns the rule it breaks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.kube.provider_schemas import FIXTURES, problems
from tests.kube.routing.test_lifecycles import CASES

Break = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Break:
    def change(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


@pytest.mark.parametrize(
    ("case", "change", "problem"),
    [
        # the CRD's schema
        ("gateway-api", _set("spec.rules.1.backendRefs.0.weight", -1), "less than the minimum"),
        ("istio-subsets", _set("spec.http.0.route.0.weight", "50"), "is not of type 'integer'"),
        ("kserve-raw", _set("spec.canary", [{"trafficPercent": 10, "predictor": {
            "name": "nayru-v2.1", "model": {"name": "", "modelFormat": {"name": "sklearn"}}}}]),
         "does not match '^[a-z]([-a-z0-9]*[a-z0-9])?$'"),
        ("kserve-raw", _set("spec.canary", [{"trafficPercent": 10, "predictor": {
            "name": "nayru-v2", "model": {"modelFormat": {"name": "sklearn"}}}}]),
         "'name' is a required property"),
        ("smi-linkerd", _set("spec.backends.0.weight", "1"), "is not of type 'number'"),
        # pruning
        ("smi-sdk-go", _set("spec.backends.0.tag", "x"), "spec.backends[0].tag: unknown field"),
        # CEL rules (Gateway API)
        ("gateway-api", _set("spec.rules.1.backendRefs.0", {"name": "nayru-v1"}),
         "Must have port for Service reference"),
        # list types
        ("gateway-api", _set("spec.parentRefs", [{"name": "gateway"}, {"name": "gateway"}]),
         "sectionName must be unique when parentRefs includes 2 or more references"),
        # the webhooks
        ("istio-subsets", _set("spec.http.0.route.0.weight", 0), "total destination weight"),
        ("knative", _set("spec.traffic.0.percent", 90), "percents must sum to 100"),
        ("knative", _set("spec.traffic.0.tag", "challenger"), "a tag used twice"),
        ("knative-third-entry", _set("spec.traffic.2.revisionName", "nayru-v0.1"),
         "not a DNS-1035 label"),
        ("kserve-serverless", _set("spec.predictor.canaryTrafficPercent", 101), "outside 0..100"),
        ("gateway-api", _set("spec.rules.1.backendRefs.0.weight", 0), "every backend at weight 0"),
        ("smi-linkerd", _set("spec.backends.0.weight", 0), "every backend at weight 0"),
    ],
    ids=["gateway-weight", "istio-weight-type", "kserve-name-pattern", "kserve-model-name",
         "smi-weight-type", "smi-unknown-field", "gateway-cel-port", "gateway-cel-parents",
         "istio-total", "knative-sum", "knative-tags", "knative-dns", "kserve-percent",
         "gateway-no-traffic", "smi-no-traffic"],
)  # fmt: skip
def test_a_broken_object_is_refused_by_its_rule(case: str, change: Break, problem: str) -> None:
    obj = copy.deepcopy(CASES[case].target)
    assert problems(obj) == []  # the fixture is sound: the break is what is found
    change(obj)
    assert any(problem in found for found in problems(obj)), problems(obj)


def test_the_fixtures_keep_their_provenance() -> None:
    readme = (FIXTURES / "README.md").read_text()
    for path in FIXTURES.glob("*.json"):
        assert f"`{path.name}`" in readme
