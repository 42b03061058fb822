"""The LearningLoop controller's pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from afs.continuous.kube import planning
from afs.continuous.kube.api.v1alpha1 import ConditionStatus, LearningLoopStatus
from afs.continuous.timeutil import format_timestamp

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1.5h", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert planning.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "1w", "", "-1s", "1 h", "h"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration.*e\.g\. 30s"):
        planning.parse_duration(text)


@pytest.mark.parametrize(
    ("last_check", "due"),
    [(None, True), (NOW - timedelta(minutes=59), False), (NOW - timedelta(hours=1), True)],
)
def test_a_check_is_due_after_the_interval(last_check: datetime | None, due: bool) -> None:
    status = LearningLoopStatus(
        last_check_time=None if last_check is None else format_timestamp(last_check)
    )
    assert planning.check_due(status, "1h", NOW) is due


def test_the_report_is_the_last_line_of_the_termination_message() -> None:
    message = 'epoch 3 done\n{"modelUri": "s3://m/run-1", "metrics": {"loss": 0.25, "steps": 10}}\n'
    report = planning.parse_termination_message(message)
    assert report == planning.TrainerReport("s3://m/run-1", {"loss": 0.25, "steps": 10.0})


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (None, "no termination message"),
        ("  \n", "no termination message"),
        ("done", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"metrics": {}}', "no modelUri"),
        ('{"modelUri": "  "}', "no modelUri"),
        ('{"modelUri": "s3://m", "metrics": [1]}', "object of numbers"),
        ('{"modelUri": "s3://m", "metrics": {"loss": "low"}}', "object of numbers"),
        ('{"modelUri": "s3://m", "metrics": {"ok": true}}', "object of numbers"),
        ('{"modelUri": "s3://m", "metrics": {"loss": NaN, "acc": 1}}', "finite numbers: loss"),
        ('{"modelUri": "s3://m", "metrics": {"loss": Infinity}}', "finite numbers: loss"),
    ],
)  # fmt: skip
def test_a_bad_report_fails_the_run_with_the_reason(message: str | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        planning.parse_termination_message(message)


def test_a_new_condition_is_added_beside_the_others() -> None:
    [other] = planning.set_condition(
        [], type="LastRunSucceeded", status=True, reason="Ok", message="", now=NOW
    )
    conditions = planning.set_condition(
        [other], type="Ready", status=False, reason="InvalidSpec", message="bad",
        now=NOW, generation=3,
    )  # fmt: skip
    assert [c.type for c in conditions] == ["LastRunSucceeded", "Ready"]
    ready = conditions[1]
    assert (ready.status, ready.reason, ready.message) == (
        ConditionStatus.FALSE,
        "InvalidSpec",
        "bad",
    )
    assert (ready.last_transition_time, ready.observed_generation) == (format_timestamp(NOW), 3)


@pytest.mark.parametrize(("status", "moves"), [(True, False), (False, True)])
def test_the_transition_time_moves_only_when_the_status_changes(status: bool, moves: bool) -> None:
    before = planning.set_condition(
        [], type="Ready", status=True, reason="Checked", message="a", now=NOW
    )
    later = NOW + timedelta(hours=1)
    [after] = planning.set_condition(
        before, type="Ready", status=status, reason="Other", message="b", now=later
    )
    assert after.last_transition_time == format_timestamp(later if moves else NOW)
    assert (after.reason, after.message) == ("Other", "b")


@pytest.mark.parametrize(
    ("job", "state"),
    [
        (None, "Missing"),
        ({}, "Running"),
        ({"status": {"active": 1}}, "Running"),
        ({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, "Succeeded"),
        ({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}, "Failed"),
        ({"status": {"conditions": [{"type": "Complete", "status": "False"}]}}, "Running"),
        ({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}}, "Running"),
        ({"status": {"succeeded": 1}}, "Succeeded"),
    ],
)
def test_job_state(job: dict[str, Any] | None, state: str) -> None:
    assert planning.job_state(job) == state


def _pod(created: str, **messages: str) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": created},
        "status": {
            "containerStatuses": [
                {"name": name, "state": {"terminated": {"message": message}}}
                for name, message in messages.items()
            ]
        },
    }


@pytest.mark.parametrize(
    ("pods", "message"),
    [
        ([], None),
        ([_pod("2026-11-26T10:00:00Z", sidecar="not this")], None),
        ([_pod("2026-11-26T10:00:00Z", trainer="", sidecar="x")], None),
        ([_pod("2026-11-26T10:00:00Z", sidecar="x", trainer="report")], "report"),
        (
            [_pod("2026-11-26T10:00:00Z", trainer="first try"),
             _pod("2026-11-26T11:00:00Z", trainer="retry")],
            "retry",
        ),
    ],
)  # fmt: skip
def test_the_trainer_message_comes_from_the_newest_pod(
    pods: list[dict[str, Any]], message: str | None
) -> None:
    assert planning.trainer_message(pods, "trainer") == message


@pytest.mark.parametrize(
    ("metadata", "ours"),
    [
        ({}, False),
        ({"ownerReferences": [{"uid": "old-loop"}]}, False),
        ({"ownerReferences": [{"uid": "other"}, {"uid": "loop-uid"}]}, True),
    ],
)
def test_an_object_is_ours_only_when_it_names_our_uid(metadata: dict[str, Any], ours: bool) -> None:
    assert planning.controlled_by({"metadata": metadata}, "loop-uid") is ours
