"""Prometheus metrics of the operator, in a registry of their own (one per operator)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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
            "afs_loop_runs", "Training runs, by outcome (started, succeeded, failed)",
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
