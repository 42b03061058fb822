"""RetrainTrigger and AutoRetrainer against a real store: persistence and retrain outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import DataGeneratorConfig, UsageLogger
from afs.continuous.trigger import AutoRetrainer, RetrainTrigger, TriggerConfig, TriggerType
from tests.conftest import FakeClock

SMALL = TriggerConfig(
    min_new_samples=20,
    min_samples_for_retrain=10,
    enable_scheduled=False,
    enable_quality_drop=False,
    cooldown_hours=24,
)


def _traffic(
    logger: UsageLogger, n: int, *, quality: float = 0.9, feedback: int | None = 1, start: int = 0
) -> list[str]:
    return [
        logger.log(
            f"question {i}",
            f"answer {i}",
            "nayru-v1",
            quality_score=quality,
            user_feedback=feedback,
        )
        for i in range(start, start + n)
    ]


def _mixed_traffic(logger: UsageLogger) -> None:
    _traffic(logger, 30, feedback=None)  # scored but no thumbs-up: the generator rejects them
    _traffic(logger, 5, quality=0.2, start=100)  # thumbs-up but low quality
    _traffic(logger, 10, start=200)
    _traffic(logger, 10, start=200)  # duplicates of the previous ten


def test_given_the_data_set_s_filters_the_count_is_what_it_accepts(logger: UsageLogger) -> None:
    _mixed_traffic(logger)
    dataset = DataGeneratorConfig(min_quality_score=0.7)  # thumbs-up only, by default
    trigger = RetrainTrigger(logger, SMALL, generator_config=dataset, clock=logger.now)
    result = trigger.check_triggers()
    assert result.metrics["new_samples"] == 10
    assert not result.triggered


def test_alone_the_trigger_counts_distinct_records_of_quality_as_the_seed_says(
    logger: UsageLogger,
) -> None:
    _mixed_traffic(logger)  # 40 distinct records at 0.9, whatever their feedback
    config = TriggerConfig(min_new_samples=40, cooldown_hours=0, enable_scheduled=False)
    result = RetrainTrigger(logger, config, clock=logger.now).check_triggers()
    assert result.metrics["new_samples"] == 40
    assert result.trigger_type is TriggerType.SAMPLE_COUNT


def test_the_original_api_s_sample_trigger_fires_on_quality_records_without_feedback(
    logger: UsageLogger,
) -> None:
    """Code written for the original: 15 records of quality 0.8, no feedback."""
    for i in range(15):
        logger.log(f"q{i}", f"r{i}", "m", quality_score=0.8)
    trigger = RetrainTrigger(
        logger, TriggerConfig(min_new_samples=10, cooldown_hours=0, enable_scheduled=False)
    )
    assert trigger.check_triggers().triggered


def test_a_rule_fires_even_on_too_little_data_and_the_retrainer_reports_it(
    logger: UsageLogger, tmp_path: Path
) -> None:
    """The trigger reports what happened; the retrainer decides not to train on 3
    samples, says why, and backs off."""
    _traffic(logger, 3)
    config = TriggerConfig(min_new_samples=2, min_samples_for_retrain=10, enable_scheduled=False)
    retrainer = AutoRetrainer(logger, config, output_dir=tmp_path, clock=logger.now)
    assert retrainer.trigger.check_triggers().trigger_type is TriggerType.SAMPLE_COUNT
    result = retrainer.check_and_retrain(train_fn=lambda path: {"trained": True})
    assert result is not None and result["status"] == "failed"
    assert "only 3 training samples; need min_samples_for_retrain=10" in result["error"]
    assert retrainer.trigger.state.consecutive_failures == 1
    assert "backing off" in retrainer.trigger.check_triggers().reason


def test_restart_keeps_cooldown_and_schedule(db_path: Path, clock: FakeClock) -> None:
    config = TriggerConfig(
        min_new_samples=5,
        min_samples_for_retrain=5,
        enable_quality_drop=False,
        schedule_interval_hours=48,
    )
    with UsageLogger(db_path, clock=clock) as logger:
        _traffic(logger, 10)
        trigger = RetrainTrigger(logger, config, clock=clock)
        assert trigger.check_triggers().trigger_type is TriggerType.SAMPLE_COUNT
        trigger.mark_retrain_completed()
    clock.advance(hours=1)
    with UsageLogger(db_path, clock=clock) as logger:  # a new process, same database
        _traffic(logger, 10, start=50)
        result = RetrainTrigger(logger, config, clock=clock).check_triggers()
        assert not result.triggered and "cooldown" in result.reason
        clock.advance(hours=24)
        result = RetrainTrigger(logger, config, clock=clock).check_triggers()
        assert result.triggered and result.trigger_type is TriggerType.SAMPLE_COUNT


def test_schedule_is_anchored_once_not_at_every_restart(db_path: Path, clock: FakeClock) -> None:
    config = TriggerConfig(
        enable_sample_count=False,
        enable_quality_drop=False,
        schedule_interval_hours=24,
        min_samples_for_retrain=1,
    )
    with UsageLogger(db_path, clock=clock) as logger:
        _traffic(logger, 3)
        assert not RetrainTrigger(logger, config, clock=clock).check_triggers().triggered
        for _ in range(3):  # restarts every 10 hours
            clock.advance(hours=10)
            result = RetrainTrigger(logger, config, clock=clock).check_triggers()
        assert result.triggered and result.trigger_type is TriggerType.SCHEDULED


def test_force_trigger_ignores_cooldown(logger: UsageLogger) -> None:
    trigger = RetrainTrigger(logger, SMALL, clock=logger.now)
    trigger.mark_retrain_completed()
    result = trigger.force_trigger("operator asked")
    assert result.triggered and result.trigger_type is TriggerType.MANUAL
    assert result.reason == "operator asked"


def test_check_and_retrain_completes_and_starts_cooldown(
    logger: UsageLogger, tmp_path: Path
) -> None:
    _traffic(logger, 25)
    seen: list[Path] = []

    def train(data_path: Path) -> dict[str, Any]:
        seen.append(data_path)
        return {"loss": 0.25, "model_path": "model.pth"}

    retrainer = AutoRetrainer(logger, SMALL, output_dir=tmp_path / "out", clock=logger.now)
    result = retrainer.check_and_retrain(train_fn=train)
    assert result is not None and result["status"] == "completed"
    assert result["trigger"]["type"] == "sample_count"
    assert result["generation"]["final_count"] == 25
    assert result["training"] == {"loss": 0.25, "model_path": "model.pth"}
    assert isinstance(seen[0], Path)  # as the original API passed it
    lines = seen[0].read_text().splitlines()
    assert len(lines) == 25 and json.loads(lines[0])["messages"][0]["role"] == "user"
    assert retrainer.check_and_retrain(train_fn=train) is None  # cooldown
    assert retrainer.trigger.state.total_retrains == 1


def test_failed_training_backs_off_instead_of_refiring(
    logger: UsageLogger, tmp_path: Path, clock: FakeClock
) -> None:
    _traffic(logger, 25)
    calls = []

    def broken(data_path: Path) -> dict[str, Any]:
        calls.append(data_path)
        raise RuntimeError("CUDA out of memory")

    retrainer = AutoRetrainer(logger, SMALL, output_dir=tmp_path, clock=clock)
    result = retrainer.check_and_retrain(train_fn=broken)
    assert result is not None and result["status"] == "failed"
    assert "CUDA out of memory" in result["error"]
    assert retrainer.check_and_retrain(train_fn=broken) is None
    assert "backing off" in retrainer.trigger.check_triggers().reason
    clock.advance(hours=1, minutes=1)
    assert retrainer.check_and_retrain(train_fn=broken) is not None
    assert len(calls) == 2
    assert retrainer.trigger.state.consecutive_failures == 2


def test_too_small_data_set_is_a_failed_attempt(logger: UsageLogger, tmp_path: Path) -> None:
    _traffic(logger, 3)
    retrainer = AutoRetrainer(logger, SMALL, output_dir=tmp_path, clock=logger.now)
    result = retrainer.check_and_retrain(force=True)
    assert result is not None and result["status"] == "failed"
    assert "only 3 training samples" in result["error"]


def test_without_train_fn_the_data_is_ready(logger: UsageLogger, tmp_path: Path) -> None:
    _traffic(logger, 25)
    result = AutoRetrainer(logger, SMALL, output_dir=tmp_path, clock=logger.now).check_and_retrain()
    assert result is not None and result["status"] == "data_ready"
    assert Path(result["generation"]["output_path"]).exists()


def test_late_feedback_reaches_the_next_retrain(
    logger: UsageLogger, tmp_path: Path, clock: FakeClock
) -> None:
    old = _traffic(logger, 15, feedback=None)  # no feedback yet
    _traffic(logger, 25, start=100)
    retrainer = AutoRetrainer(logger, SMALL, output_dir=tmp_path, clock=clock)
    clock.advance(minutes=1)
    first = retrainer.check_and_retrain(train_fn=lambda p: {})
    assert first is not None and first["generation"]["final_count"] == 25
    clock.advance(hours=30)
    for record_id in old:
        logger.record_feedback(record_id, 1)
    _traffic(logger, 10, start=300)
    second = retrainer.check_and_retrain(train_fn=lambda p: {})
    assert second is not None and second["generation"]["final_count"] == 25  # 15 late + 10 new


def test_generator_config_drives_the_count(logger: UsageLogger) -> None:
    _traffic(logger, 30, feedback=None)
    lenient = DataGeneratorConfig(min_user_feedback=None)
    trigger = RetrainTrigger(logger, SMALL, generator_config=lenient, clock=logger.now)
    assert trigger.check_triggers().triggered


@pytest.mark.parametrize(
    "bad",
    [
        {"cooldown_hours": -1},
        {"min_new_samples": "many"},
        {"enable_scheduled": 1},
        {"schedule_interval_hours": 0},
    ],
)
def test_trigger_config_rejects_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TriggerConfig(**bad)


def test_restart_keeps_the_quality_baseline(db_path: Path, clock: FakeClock) -> None:
    config = TriggerConfig(
        enable_sample_count=False,
        enable_scheduled=False,
        min_window_samples=10,
        cooldown_hours=1,
        min_samples_for_retrain=5,
    )
    with UsageLogger(db_path, clock=clock) as logger:
        _traffic(logger, 30, quality=0.9)
        clock.advance(minutes=1)
        RetrainTrigger(logger, config, clock=clock).mark_retrain_completed()
    clock.advance(hours=2)
    with UsageLogger(db_path, clock=clock) as logger:
        state = RetrainTrigger(logger, config, clock=clock).state
        assert state.baseline_quality == pytest.approx(0.9)
        assert state.baseline_samples == 30
        _traffic(logger, 30, quality=0.6, start=500)
        lenient = DataGeneratorConfig(min_quality_score=0.5)
        result = RetrainTrigger(
            logger, config, generator_config=lenient, clock=clock
        ).check_triggers()
        assert result.trigger_type is TriggerType.QUALITY_DROP
        assert result.metrics["reference"] == "baseline at last retrain"
