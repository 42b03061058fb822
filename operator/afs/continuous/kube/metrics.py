"""Prometheus metrics of the operator, in a registry of their own (one per operator)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from afs.continuous.kube.api.v1alpha1 import (
    ABTestPhase,
    ArmWeights,
    Condition,
    LearningLoopStatus,
    LoopPhase,
)

#: per-arm gauges of an ABTest, from its last analysis
ARM_GAUGES = {
    "requests": "Records of each arm in the test's epochs so far",
    "quality": "Mean quality score of each arm's scored records",
    "latency_ms": "Geometric mean latency (ms) of each arm's measured records",
    "error_rate": "Share of each arm's records that are errors",
    "negative_feedback_rate": "Share of each arm's rated records rated negative",
}


def arm_figures(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """An arm's summary in the verdict's evidence, as the gauges show it."""
    requests = summary.get("requests")
    errors = summary.get("errors")
    return {
        "requests": requests,
        "quality": summary.get("mean_quality"),
        "latency_ms": summary.get("geometric_mean_latency_ms"),
        "error_rate": errors / requests if requests and errors is not None else None,
        "negative_feedback_rate": summary.get("negative_rate"),
    }


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.checks = Counter(
            "afs_loop_checks", "Trigger checks made, per loop", ["namespace", "loop"],
            registry=self.registry,
        )  # fmt: skip
        self.triggers = Counter(
            "afs_loop_triggers_fired", "Triggers that fired, by type", ["type"],
            registry=self.registry,
        )  # fmt: skip
        self.runs = Counter(
            "afs_loop_runs",
            "Training runs, by outcome (started, succeeded, failed, rejected by the gate)",
            ["outcome"], registry=self.registry,
        )  # fmt: skip
        self.reconcile_seconds = Histogram(
            "afs_loop_reconcile_seconds", "Duration of one LearningLoop reconciliation",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.invalid_specs = Counter(
            "afs_loop_invalid_specs", "Reconciliations refused for an invalid spec",
            registry=self.registry,
        )  # fmt: skip
        self.loop_phase = Gauge(
            "afs_loop_phase", "1 for the phase each LearningLoop is in, 0 for the others",
            ["namespace", "loop", "phase"], registry=self.registry,
        )  # fmt: skip
        self.loop_failures_in_a_row = Gauge(
            "afs_loop_failed_runs_in_a_row",
            "Training runs of each LearningLoop that failed since its last success",
            ["namespace", "loop"], registry=self.registry,
        )  # fmt: skip
        self.database_unavailable = Gauge(
            "afs_database_unavailable",
            "1 while a LearningLoop or ABTest cannot reach its usage database",
            ["namespace", "kind", "name"], registry=self.registry,
        )  # fmt: skip
        self.abtest_phase = Gauge(
            "afs_abtest_phase", "1 for the phase each ABTest is in, 0 for the others",
            ["namespace", "name", "phase"], registry=self.registry,
        )  # fmt: skip
        self.abtest_weight = Gauge(
            "afs_abtest_weight", "The weight (percent) each ABTest last wrote, per arm",
            ["namespace", "name", "arm"], registry=self.registry,
        )  # fmt: skip
        self.abtest_arm = {
            key: Gauge(
                f"afs_abtest_arm_{key}",
                help_text,
                ["namespace", "name", "arm"],
                registry=self.registry,
            )
            for key, help_text in ARM_GAUGES.items()
        }
        self.abtest_decisions = Counter(
            "afs_abtest_decisions", "ABTests ended, by verdict", ["verdict"],
            registry=self.registry,
        )  # fmt: skip
        self.abtest_duration = Histogram(
            "afs_abtest_duration_seconds", "How long ABTests ran, from first step to verdict",
            registry=self.registry,
            buckets=(3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 4 * 86400, 7 * 86400,
                     14 * 86400, 30 * 86400),
        )  # fmt: skip
        self.abtest_reconcile_seconds = Histogram(
            "afs_abtest_reconcile_seconds", "Duration of one ABTest reconciliation",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip

    def set_loop(self, namespace: str, name: str, status: LearningLoopStatus) -> None:
        """A loop's phase and its failed runs in a row, from the status just written."""
        for each in LoopPhase:
            self.loop_phase.labels(namespace, name, each.value).set(int(each == status.phase))
        self.loop_failures_in_a_row.labels(namespace, name).set(failures_in_a_row(status))
        self.set_database(namespace, "LearningLoop", name, status.conditions)

    def forget_loop(self, namespace: str, name: str) -> None:
        for each in LoopPhase:
            self._remove(self.loop_phase, namespace, name, each.value)
        self._remove(self.loop_failures_in_a_row, namespace, name)
        self._remove(self.database_unavailable, namespace, "LearningLoop", name)

    def set_database(
        self, namespace: str, kind: str, name: str, conditions: Sequence[Condition]
    ) -> None:
        """1 while the resource's Ready condition says it cannot reach its database."""
        ready = next((c for c in conditions if c.type == "Ready"), None)
        down = ready is not None and ready.reason == "DatabaseUnavailable"
        self.database_unavailable.labels(namespace, kind, name).set(int(down))

    def set_abtest(
        self, namespace: str, name: str, phase: ABTestPhase | None, weights: ArmWeights | None
    ) -> None:
        for each in ABTestPhase:
            self.abtest_phase.labels(namespace, name, each.value).set(int(each == phase))
        if weights is not None:
            self.abtest_weight.labels(namespace, name, "champion").set(weights.champion)
            self.abtest_weight.labels(namespace, name, "challenger").set(weights.challenger)

    def set_abtest_arms(self, namespace: str, name: str, evidence: Mapping[str, Any]) -> None:
        """Each arm's figures from the last analysis (``status.evidence.arms``); a figure
        not known yet (no records, nothing scored) is left out, not shown as 0."""
        arms = evidence.get("arms") or {}
        for arm in ("champion", "challenger"):
            figures = arm_figures(arms.get(arm) or {})
            for key, gauge in self.abtest_arm.items():
                value = figures.get(key)
                if value is not None:
                    gauge.labels(namespace, name, arm).set(value)

    def forget_abtest(self, namespace: str, name: str) -> None:
        """A deleted test's series go (they would otherwise stay at their last value)."""
        for each in ABTestPhase:
            self._remove(self.abtest_phase, namespace, name, each.value)
        for arm in ("champion", "challenger"):
            self._remove(self.abtest_weight, namespace, name, arm)
            for gauge in self.abtest_arm.values():
                self._remove(gauge, namespace, name, arm)
        self._remove(self.database_unavailable, namespace, "ABTest", name)

    @staticmethod
    def _remove(gauge: Gauge, *labels: str) -> None:
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)


def failures_in_a_row(status: LearningLoopStatus) -> int:
    """Failed runs since the last success, as far as the recent runs in the status go."""
    count = 0
    for outcome in reversed(status.runs.recent):
        if outcome.result != "Failed":
            break
        count += 1
    return count
