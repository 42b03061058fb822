"""The evaluation gate's rule, one condition at a time."""

from __future__ import annotations

import math
from typing import Any

import pytest

from afs.continuous.core.evaluation import EvaluationRule, MetricRule, judge_evaluation

ACCURACY = MetricRule("accuracy", max_regression=0.01)
LOSS = MetricRule("loss", higher_is_better=False, min_delta=0.0)


@pytest.mark.parametrize(
    ("rule", "candidate", "champion", "passed", "reason"),
    [
        (EvaluationRule((ACCURACY,)), {"accuracy": 0.80}, {"accuracy": 0.805}, True, ""),
        (EvaluationRule((ACCURACY,)), {"accuracy": 0.70}, {"accuracy": 0.80}, False,
         "accuracy 0.7 vs champion 0.8: regressed by 0.1, more than 0.01"),
        (EvaluationRule((MetricRule("accuracy", min_delta=0.05),)), {"accuracy": 0.82},
         {"accuracy": 0.80}, False, "must improve by 0.05"),
        (EvaluationRule((LOSS,)), {"loss": 0.4}, {"loss": 0.5}, True, ""),
        (EvaluationRule((LOSS,)), {"loss": 0.6}, {"loss": 0.5}, False, "must improve by 0"),
        (EvaluationRule((ACCURACY,)), {"acc": 0.9}, {"accuracy": 0.8}, False,
         "accuracy: missing from the report"),
        (EvaluationRule((ACCURACY,)), {"accuracy": math.nan}, {"accuracy": 0.8}, False,
         "missing from the report"),
        (EvaluationRule((ACCURACY,)), {"accuracy": "0.9"}, {"accuracy": 0.8}, False,
         "missing from the report"),
        (EvaluationRule((ACCURACY,)), {"accuracy": 0.1}, None, True, ""),  # first model
        (EvaluationRule((ACCURACY,)), {"accuracy": 0.9}, {}, False,
         "the champion's is missing from the report"),
        (EvaluationRule((MetricRule("accuracy", minimum=0.5),)), {"accuracy": 0.4}, None,
         False, "accuracy 0.4: must be at least 0.5"),
        (EvaluationRule(min_golden_pass_rate=1.0), {"golden_pass_rate": 0.95}, None, False,
         "golden_pass_rate 0.95: must be at least 1"),
        (EvaluationRule(min_golden_pass_rate=0.9), {"golden_pass_rate": 0.95}, None, True, ""),
        (EvaluationRule(min_golden_pass_rate=0.9), {}, None, False,
         "golden_pass_rate: missing from the report"),
        (EvaluationRule(), {}, None, True, ""),
    ],
)  # fmt: skip
def test_the_rule(
    rule: EvaluationRule,
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    passed: bool,
    reason: str,
) -> None:
    verdict = judge_evaluation(rule, candidate, champion)
    assert verdict.passed is passed
    assert reason in verdict.summary


def test_every_failed_condition_is_a_reason() -> None:
    rule = EvaluationRule((ACCURACY, LOSS), min_golden_pass_rate=1.0)
    verdict = judge_evaluation(
        rule, {"accuracy": 0.5, "loss": 0.9, "golden_pass_rate": 0.5},
        {"accuracy": 0.8, "loss": 0.5},
    )  # fmt: skip
    assert len(verdict.reasons) == 3
    assert verdict.to_dict()["checks"][0] == {
        "name": "accuracy", "candidate": 0.5, "champion": 0.8, "passed": False,
        "reason": verdict.reasons[0],
    }  # fmt: skip
