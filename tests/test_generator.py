"""Training-data generation: filters, formats, de-duplication, rehearsal, atomic output."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger
from afs.continuous.errors import InvalidFieldError, SampleFormatError


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def populated(logger: UsageLogger) -> UsageLogger:
    rows = [
        ("good one", "answer one", 0.9, 1),
        ("good two", "answer two", 0.8, 1),
        ("Good  one", "ANSWER one", 0.95, 1),  # duplicate of the first, better score
        ("neutral", "answer n", 0.9, 0),
        ("bad feedback", "answer b", 0.9, -1),
        ("no feedback", "answer x", 0.9, None),
        ("low quality", "answer l", 0.3, 1),
        ("unscored", "answer u", None, 1),
    ]
    for query, response, quality, feedback in rows:
        logger.log(query, response, "nayru-v1", "asm", 100, quality, user_feedback=feedback)
    return logger


def test_defaults_keep_scored_positive_unique_records(
    populated: UsageLogger, tmp_path: Path
) -> None:
    out = tmp_path / "train.jsonl"
    result = TrainingDataGenerator(populated).generate(out)
    assert (result.total_candidates, result.filtered_by_quality, result.filtered_by_feedback) == (
        8,
        2,
        3,
    )
    assert (result.duplicates_removed, result.final_count) == (1, 2)
    lines = _read(out)
    assert [line["messages"][0]["content"] for line in lines] == ["good two", "Good  one"]
    assert lines[1]["metadata"] == {
        "quality_score": 0.95,
        "user_feedback": 1,
        "model": "nayru-v1",
        "expert": "asm",
    }
    assert result.quality_stats["count"] == 2
    assert result.quality_stats["mean"] == pytest.approx(0.875)


@pytest.mark.parametrize(
    ("min_user_feedback", "expected"),
    [(1, 2), (0, 3), (-1, 4), (None, 5)],
)
def test_feedback_threshold(
    populated: UsageLogger, tmp_path: Path, min_user_feedback: int | None, expected: int
) -> None:
    config = DataGeneratorConfig(min_user_feedback=min_user_feedback)
    result = TrainingDataGenerator(populated, config).generate(tmp_path / "t.jsonl")
    assert result.final_count == expected


def test_zero_quality_threshold_lets_unscored_records_through(
    populated: UsageLogger, tmp_path: Path
) -> None:
    config = DataGeneratorConfig(min_quality_score=0.0)
    result = TrainingDataGenerator(populated, config).generate(tmp_path / "t.jsonl")
    assert result.filtered_by_quality == 0
    assert result.final_count == 4  # + low quality, + unscored


def test_without_dedupe_duplicates_are_kept(populated: UsageLogger, tmp_path: Path) -> None:
    config = DataGeneratorConfig(deduplicate=False)
    result = TrainingDataGenerator(populated, config).generate(tmp_path / "t.jsonl")
    assert (result.duplicates_removed, result.final_count) == (0, 3)


def test_max_samples_keeps_the_best(populated: UsageLogger, tmp_path: Path) -> None:
    config = DataGeneratorConfig(max_samples=1)
    out = tmp_path / "t.jsonl"
    TrainingDataGenerator(populated, config).generate(out)
    assert [line["metadata"]["quality_score"] for line in _read(out)] == [0.95]


@pytest.mark.parametrize(
    ("format_type", "expected"),
    [
        (
            "alpaca",
            {"instruction": "good two", "input": "", "output": "answer two", "quality_score": 0.8},
        ),
        ("completion", {"text": "good two\n\nanswer two", "quality_score": 0.8}),
        (
            "openai",
            {
                "messages": [
                    {"role": "user", "content": "good two"},
                    {"role": "assistant", "content": "answer two"},
                ]
            },
        ),
    ],
)
def test_output_formats(
    populated: UsageLogger, tmp_path: Path, format_type: str, expected: dict[str, Any]
) -> None:
    out = tmp_path / "t.jsonl"
    TrainingDataGenerator(populated, DataGeneratorConfig(format_type=format_type)).generate(out)  # type: ignore[arg-type]
    assert _read(out)[0] == expected


def test_unknown_format_is_refused_before_any_file_is_touched(
    populated: UsageLogger, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="format_type"):
        DataGeneratorConfig(format_type="parquet")  # type: ignore[arg-type]
    config = DataGeneratorConfig()
    with pytest.raises(ValidationError, match="format_type"):
        config.format_type = "parquet"  # type: ignore[assignment]
    assert list(tmp_path.glob("*.jsonl")) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_quality_score": 1.5},
        {"min_quality_score": "0.7"},
        {"min_user_feedback": 2},
        {"max_samples": -1},
        {"deduplicate": "yes"},
        {"surprise": True},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DataGeneratorConfig(**kwargs)


def test_since_limits_candidates(populated: UsageLogger, tmp_path: Path, clock: Any) -> None:
    clock.advance(hours=1)
    populated.log("late", "answer late", "nayru-v1", quality_score=0.99, user_feedback=1)
    result = TrainingDataGenerator(populated).generate(
        tmp_path / "t.jsonl", since="2026-11-20T12:30:00Z"
    )
    assert (result.total_candidates, result.final_count) == (1, 1)


def test_rehearsal_buffer_is_merged_and_duplicates_dropped(
    populated: UsageLogger, tmp_path: Path
) -> None:
    buffer = tmp_path / "rehearsal.jsonl"
    buffer.write_text(
        json.dumps(
            {"instruction": "old lesson", "input": "", "output": "old answer", "quality_score": 0.9}
        )
        + "\n\n"
        + json.dumps({"text": "good two\n\nanswer two"})  # the same as a new sample
        + "\n"
        + json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "chat q"},
                    {"role": "assistant", "content": "chat a"},
                ]
            }
        )
        + "\n"
    )
    config = DataGeneratorConfig(existing_data_path=str(buffer))
    out = tmp_path / "t.jsonl"
    result = TrainingDataGenerator(populated, config).generate(out)
    lines = _read(out)
    queries = [[m for m in line["messages"] if m["role"] == "user"][-1] for line in lines]
    assert [q["content"] for q in queries] == ["old lesson", "good two", "chat q", "Good  one"]
    assert lines[2]["messages"][0] == {"role": "system", "content": "be brief"}  # kept whole
    assert (result.existing_samples, result.usage_samples, result.final_count) == (3, 1, 4)
    assert result.duplicates_removed == 2  # one among usage records, one against the buffer


def test_rehearsal_disabled_or_missing_merges_nothing(
    populated: UsageLogger, tmp_path: Path
) -> None:
    buffer = tmp_path / "r.jsonl"
    buffer.write_text(json.dumps({"text": "a\n\nb"}) + "\n")
    off = DataGeneratorConfig(include_existing_data=False, existing_data_path=buffer)
    assert (
        TrainingDataGenerator(populated, off).generate(tmp_path / "1.jsonl").existing_samples == 0
    )
    missing = DataGeneratorConfig(existing_data_path=tmp_path / "nope.jsonl")
    assert (
        TrainingDataGenerator(populated, missing).generate(tmp_path / "2.jsonl").existing_samples
        == 0
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"text": "no blank line"}', "blank line"),
        ('{"messages": [{"role": "user", "content": "only a question"}]}', "assistant"),
        ('{"prompt": "x", "completion": "y"}', "not a chatml"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_malformed_rehearsal_line_fails_and_keeps_the_old_output(
    populated: UsageLogger, tmp_path: Path, line: str, problem: str
) -> None:
    buffer = tmp_path / "r.jsonl"
    buffer.write_text(json.dumps({"text": "a\n\nb"}) + "\n" + line + "\n")
    out = tmp_path / "t.jsonl"
    out.write_text("previous output\n")
    config = DataGeneratorConfig(existing_data_path=buffer)
    with pytest.raises(SampleFormatError, match=problem) as caught:
        TrainingDataGenerator(populated, config).generate(out)
    assert caught.value.line == 2
    assert out.read_text() == "previous output\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_output_directory_is_created_and_path_may_be_str(
    populated: UsageLogger, tmp_path: Path
) -> None:
    out = tmp_path / "new" / "dir" / "t.jsonl"
    result = TrainingDataGenerator(populated).generate(str(out))
    assert out.exists() and result.output_path == out
    assert result.output_path.exists()  # a Path, as the original API gave it
    assert result.to_dict()["output_path"] == str(out)


def test_generator_accepts_a_usage_database(populated: UsageLogger, tmp_path: Path) -> None:
    result = TrainingDataGenerator(populated.db).generate(tmp_path / "t.jsonl")
    assert result.final_count == 2


def test_late_feedback_reaches_the_next_generation(logger: UsageLogger, tmp_path: Path) -> None:
    record_id = logger.log("q", "r", "m", quality_score=0.9)
    assert TrainingDataGenerator(logger).generate(tmp_path / "1.jsonl").final_count == 0
    logger.record_feedback(record_id, 1)
    assert TrainingDataGenerator(logger).generate(tmp_path / "2.jsonl").final_count == 1


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_an_output_path_that_is_not_a_regular_file_is_not_replaced(
    populated: UsageLogger, tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "train.jsonl"
    elsewhere = tmp_path / "someone-elses.txt"
    elsewhere.write_text("keep me")
    if kind == "symlink":
        target.symlink_to(elsewhere)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    with pytest.raises(InvalidFieldError, match=r"output_path .* not replaced"):
        TrainingDataGenerator(populated).generate(target)
    assert elsewhere.read_text() == "keep me"
    assert (target.is_symlink(), target.is_fifo(), target.is_dir()) == (
        kind == "symlink", kind == "fifo", kind == "directory"
    )  # fmt: skip
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_temporary_files_left_by_a_killed_export_are_cleaned(
    populated: UsageLogger, tmp_path: Path
) -> None:
    target = tmp_path / "train.jsonl"
    stale, fresh = tmp_path / ".train.jsonl.dead.tmp", tmp_path / ".train.jsonl.live.tmp"
    for leftover in (stale, fresh):
        leftover.write_text("partial")
    day_and_more = time.time() - 25 * 3600
    os.utime(stale, (day_and_more, day_and_more))
    TrainingDataGenerator(populated).generate(target)
    assert not stale.exists()
    assert fresh.exists()  # perhaps another export's, still running
