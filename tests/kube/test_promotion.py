"""The pure promotion functions: the ABTest a new version gets, and ModelVersion stages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from afs.continuous.kube.api.v1alpha1 import ABTestSpec, PromotionSpec
from afs.continuous.kube.promotion import (
    INITIAL_STAGE,
    challenger_test,
    champion_of,
    model_version_status,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SPEC = {"model": "nayru-v1", "version": "run-1", "uri": "s3://m/1"}
TRAFFIC = {
    "provider": "istio",
    "targetRef": {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "name": "n"},
}


def _promotion(**extra: Any) -> PromotionSpec:
    return PromotionSpec.model_validate({"traffic": TRAFFIC, **extra})


def test_the_challenger_test_is_a_valid_ab_test_named_like_the_challenger() -> None:
    promotion = _promotion(mode="manual", abTest={"initialChallengerTraffic": 0.25, "alpha": 0.01})
    test = challenger_test(
        loop="nayru", namespace="ml", uid="u1", run=3, promotion=promotion,
        champion="nayru-run-2", challenger="nayru-run-3",
    )  # fmt: skip
    spec = ABTestSpec.model_validate(test["spec"])  # the CRD's own model accepts it
    assert test["metadata"]["name"] == "nayru-run-3"
    assert test["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert (spec.champion.model_version, spec.challenger.model_version) == (
        "nayru-run-2",
        "nayru-run-3",
    )
    assert [s.weight for s in spec.steps] == [25]
    assert spec.decision.alpha == 0.01
    assert spec.promotion == "manual"
    assert test["spec"]["traffic"] == {**TRAFFIC, "onDrift": "reassert", "createRevision": False}


@pytest.mark.parametrize(
    ("spec_champion", "status_champion", "expected"),
    [(None, None, None), ("base", None, "base"), ("base", "run-4", "run-4")],
)
def test_the_loop_s_own_champion_wins_over_the_one_in_the_spec(
    spec_champion: str | None, status_champion: str | None, expected: str | None
) -> None:
    assert champion_of(_promotion(champion=spec_champion), status_champion) == expected


@pytest.mark.parametrize(
    ("status", "annotations", "stage"),
    [
        ({}, {}, "Candidate"),
        ({}, {INITIAL_STAGE: "Challenger"}, "Challenger"),
        ({}, {INITIAL_STAGE: "Champion"}, "Champion"),
        ({}, {INITIAL_STAGE: "Emperor"}, "Candidate"),
        ({"stage": "Retired"}, {INITIAL_STAGE: "Challenger"}, "Retired"),
        ({"stage": "Bogus"}, {}, "Candidate"),
    ],
)
def test_a_model_version_always_has_a_stage_and_keeps_the_one_it_has(
    status: dict[str, Any], annotations: dict[str, str], stage: str
) -> None:
    new = model_version_status(
        spec=SPEC, status=status, annotations=annotations, now=NOW, generation=2
    )
    assert new.stage == stage
    assert new.observed_generation == 2
    assert [(c.type, c.status, c.reason) for c in new.conditions] == [("Ready", "True", "Recorded")]


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({**SPEC, "uri": ""}, "uri"),
        ({k: v for k, v in SPEC.items() if k != "model"}, "model"),
        ({**SPEC, "metrics": {"loss": "low"}}, "metrics.loss"),
        ({**SPEC, "colour": "blue"}, "colour"),
    ],
)
def test_an_invalid_model_version_gets_a_condition_and_no_stage(
    spec: dict[str, Any], complaint: str
) -> None:
    new = model_version_status(spec=spec, status={}, annotations={}, now=NOW, generation=1)
    assert new.stage is None
    (ready,) = new.conditions
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert complaint in ready.message
