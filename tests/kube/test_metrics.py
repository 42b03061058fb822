"""The operator's metrics that follow each resource's status: loop phase, failed runs in
a row, and a database that cannot be reached."""

from __future__ import annotations

from typing import Any

import pytest

from afs.continuous.kube.api.v1alpha1 import Condition, LearningLoopStatus
from afs.continuous.kube.metrics import OperatorMetrics, failures_in_a_row


def _status(*results: str, phase: str = "Watching", ready: str = "Watching") -> LearningLoopStatus:
    return LearningLoopStatus.model_validate({
        "phase": phase,
        "runs": {"recent": [
            {"number": i, "job": f"j{i}", "result": r, "finished": "2026-11-20T12:00:00Z"}
            for i, r in enumerate(results)
        ]},
        "conditions": [{"type": "Ready", "status": "True", "reason": ready,
                        "lastTransitionTime": "2026-11-20T12:00:00Z"}],
    })  # fmt: skip


@pytest.mark.parametrize(
    ("results", "expected"),
    [((), 0), (("Succeeded",), 0), (("Failed",), 1),
     (("Failed", "Succeeded", "Failed", "Failed"), 2), (("Failed",) * 5, 5)],
)  # fmt: skip
def test_failed_runs_in_a_row_count_back_to_the_last_success(
    results: tuple[str, ...], expected: int
) -> None:
    assert failures_in_a_row(_status(*results)) == expected


def _value(metrics: OperatorMetrics, metric: str, **labels: Any) -> float | None:
    return metrics.registry.get_sample_value(metric, labels)


def test_a_loops_phase_failures_and_database_follow_its_status() -> None:
    metrics = OperatorMetrics()
    metrics.set_loop("ml", "nayru", _status("Failed", "Failed", phase="Training"))
    assert _value(metrics, "afs_loop_phase", namespace="ml", loop="nayru", phase="Training") == 1
    assert _value(metrics, "afs_loop_phase", namespace="ml", loop="nayru", phase="Watching") == 0
    assert _value(metrics, "afs_loop_failed_runs_in_a_row", namespace="ml", loop="nayru") == 2
    down = dict(namespace="ml", kind="LearningLoop", name="nayru")
    assert _value(metrics, "afs_database_unavailable", **down) == 0
    metrics.set_loop("ml", "nayru", _status(ready="DatabaseUnavailable"))
    assert _value(metrics, "afs_database_unavailable", **down) == 1
    metrics.forget_loop("ml", "nayru")
    assert _value(metrics, "afs_loop_phase", namespace="ml", loop="nayru", phase="Training") is None
    assert _value(metrics, "afs_database_unavailable", **down) is None


def test_an_abtests_database_state_follows_its_ready_condition() -> None:
    metrics = OperatorMetrics()
    condition = Condition.model_validate({
        "type": "Ready", "status": "False", "reason": "DatabaseUnavailable",
        "lastTransitionTime": "2026-11-20T12:00:00Z",
    })  # fmt: skip
    metrics.set_database("ml", "ABTest", "nayru-v2", [condition])
    labels = dict(namespace="ml", kind="ABTest", name="nayru-v2")
    assert _value(metrics, "afs_database_unavailable", **labels) == 1
    metrics.forget_abtest("ml", "nayru-v2")
    assert _value(metrics, "afs_database_unavailable", **labels) is None


def test_each_arms_figures_follow_the_last_analysis_and_unknown_ones_stay_out() -> None:
    metrics = OperatorMetrics()
    evidence = {"arms": {
        "champion": {"requests": 200, "mean_quality": 0.6, "errors": 10,
                     "geometric_mean_latency_ms": 120.0, "negative_rate": 0.1},
        "challenger": {"requests": 0, "mean_quality": None, "errors": 0,
                       "geometric_mean_latency_ms": None, "negative_rate": None},
    }}  # fmt: skip
    metrics.set_abtest_arms("ml", "nayru-v2", evidence)
    champion = dict(namespace="ml", name="nayru-v2", arm="champion")
    challenger = dict(namespace="ml", name="nayru-v2", arm="challenger")
    assert _value(metrics, "afs_abtest_arm_quality", **champion) == 0.6
    assert _value(metrics, "afs_abtest_arm_error_rate", **champion) == 0.05
    assert _value(metrics, "afs_abtest_arm_latency_ms", **champion) == 120.0
    assert _value(metrics, "afs_abtest_arm_requests", **challenger) == 0
    assert _value(metrics, "afs_abtest_arm_quality", **challenger) is None
    assert _value(metrics, "afs_abtest_arm_error_rate", **challenger) is None
    metrics.forget_abtest("ml", "nayru-v2")
    assert _value(metrics, "afs_abtest_arm_quality", **champion) is None
