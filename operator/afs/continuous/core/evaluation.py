"""The offline evaluation gate: a candidate's metrics on the held-out test set (and the
golden set) against the champion's, judged by a rule fixed in advance.

Pure: the metrics come from whoever evaluated (a function locally, an evaluator Job in
a cluster); this only says whether the candidate may meet users, and why not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: the metric an evaluator reports for the golden set: the share of its items passed
GOLDEN_PASS_RATE = "golden_pass_rate"


@dataclass(frozen=True)
class MetricRule:
    """One metric's condition, in the metric's better direction (``higher_is_better``).

    ``min_delta``: the candidate must beat the champion by at least this much (0: at
    least match it). ``max_regression``: it may be worse by at most this much. Without a
    champion (the first model), only ``minimum`` applies.
    """

    name: str
    higher_is_better: bool = True
    min_delta: float | None = None
    max_regression: float | None = None
    minimum: float | None = None
    """An absolute floor (a ceiling when lower is better)."""


@dataclass(frozen=True)
class EvaluationRule:
    metrics: tuple[MetricRule, ...] = ()
    min_golden_pass_rate: float | None = None
    """The least share of golden-set items the candidate must pass (its evaluator
    reports it as ``golden_pass_rate``)."""


@dataclass(frozen=True)
class MetricCheck:
    name: str
    candidate: float | None
    champion: float | None
    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class EvaluationVerdict:
    passed: bool
    checks: tuple[MetricCheck, ...] = ()
    reasons: tuple[str, ...] = field(default=())

    @property
    def summary(self) -> str:
        if self.passed:
            return "passed: " + ("; ".join(c.reason for c in self.checks) or "no rule to meet")
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "checks": [
                {"name": c.name, "candidate": c.candidate, "champion": c.champion,
                 "passed": c.passed, "reason": c.reason}
                for c in self.checks
            ],
        }  # fmt: skip


def _number(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    value = (metrics or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _check(
    rule: MetricRule,
    candidate: float | None,
    champion: float | None,
    *,
    compared: bool,
) -> MetricCheck:
    """``compared``: there is a champion to compare with (whose value may be missing)."""
    name = rule.name
    if candidate is None:
        return MetricCheck(name, None, champion, False, f"{name}: missing from the report")
    sign = 1.0 if rule.higher_is_better else -1.0
    if rule.minimum is not None and sign * (candidate - rule.minimum) < 0:
        bound = "at least" if rule.higher_is_better else "at most"
        return MetricCheck(
            name,
            candidate,
            champion,
            False,
            f"{name} {candidate:g}: must be {bound} {rule.minimum:g}",
        )
    if not compared:
        return MetricCheck(name, candidate, None, True, f"{name} {candidate:g} (no champion)")
    if champion is None:
        if rule.min_delta is None and rule.max_regression is None:
            return MetricCheck(name, candidate, None, True, f"{name} {candidate:g}")
        return MetricCheck(
            name, candidate, None, False, f"{name}: the champion's is missing from the report"
        )
    gain = sign * (candidate - champion)
    if rule.min_delta is not None and gain < rule.min_delta:
        return MetricCheck(
            name, candidate, champion, False,
            f"{name} {candidate:g} vs champion {champion:g}: must improve by {rule.min_delta:g}",
        )  # fmt: skip
    if rule.max_regression is not None and -gain > rule.max_regression:
        return MetricCheck(
            name, candidate, champion, False,
            f"{name} {candidate:g} vs champion {champion:g}: regressed by {-gain:g}, more "
            f"than {rule.max_regression:g}",
        )  # fmt: skip
    return MetricCheck(name, candidate, champion, True, f"{name} {candidate:g} vs {champion:g}")


def judge_evaluation(
    rule: EvaluationRule,
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
) -> EvaluationVerdict:
    """Every condition of ``rule`` on the candidate's metrics and, when there is a
    champion (``champion`` not None), on the difference. A metric the rule names and the
    report lacks — the candidate's, or the champion's when it is compared — fails."""
    checks = [
        _check(metric, _number(candidate, metric.name), _number(champion, metric.name),
               compared=champion is not None)
        for metric in rule.metrics
    ]  # fmt: skip
    if rule.min_golden_pass_rate is not None:
        golden = MetricRule(GOLDEN_PASS_RATE, minimum=rule.min_golden_pass_rate)
        checks.append(_check(golden, _number(candidate, GOLDEN_PASS_RATE), None, compared=False))
    reasons = tuple(check.reason for check in checks if not check.passed)
    return EvaluationVerdict(passed=not reasons, checks=tuple(checks), reasons=reasons)
