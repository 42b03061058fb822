"""Stable splits, held-out files and decontamination: a record's set follows from its key
alone, a test record never becomes training data as data grows, and training items equal
to held-out or golden ones are left out."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger
from afs.continuous.cli import main
from afs.continuous.errors import InvalidFieldError
from afs.continuous.splits import assign_split, check_split, split_key, split_path

RATIOS = (0.6, 0.2, 0.2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((0.9, 0.1), "three fractions"),
        ("0.9,0.05,0.05", "three fractions"),
        ((0.9, 0.05, 0.1), "sum to 1"),
        ((1.2, -0.1, -0.1), r"in \[0, 1\]"),
        ((0.0, 0.5, 0.5), "some records for training"),
        ((0.9, True, 0.1), r"in \[0, 1\]"),
    ],
)
def test_bad_ratios_are_refused(value: Any, message: str) -> None:
    with pytest.raises(InvalidFieldError, match=message):
        check_split(value)


def test_a_key_always_lands_in_the_same_set_and_the_ratios_hold() -> None:
    keys = [f"a:user-{i}" for i in range(20_000)]
    first = [assign_split(key, RATIOS) for key in keys]
    assert first == [assign_split(key, RATIOS) for key in keys]
    shares: Counter[str] = Counter(first)
    for name, ratio in zip(("train", "validation", "test"), RATIOS, strict=True):
        assert abs(shares[name] / len(keys) - ratio) < 0.015


def test_the_key_is_the_user_else_the_conversation_else_the_content() -> None:
    system = {"role": "system", "content": "be brief"}
    opening = [system, {"role": "user", "content": "hello"}]
    later = [*opening, {"role": "assistant", "content": "hi"}, {"role": "user", "content": "?"}]
    kwargs: dict[str, Any] = {"record_id": "r1", "tools": None}
    assert split_key(assignment_hash="ab" * 16, messages=later, **kwargs) == "a:" + "ab" * 16
    assert split_key(assignment_hash=None, messages=opening, **kwargs) == split_key(
        assignment_hash=None, messages=later, **kwargs
    )
    other = [system, {"role": "user", "content": "another question"}]
    assert split_key(assignment_hash=None, messages=other, **kwargs) != split_key(
        assignment_hash=None, messages=opening, **kwargs
    )
    assert split_key(assignment_hash=None, messages=None, content_hash="cd", **kwargs) == "d:cd"
    assert split_key(assignment_hash=None, messages=None, **kwargs) == "r:r1"


def test_held_out_files_sit_beside_the_output() -> None:
    assert split_path(Path("/d/dataset.jsonl"), "test") == Path("/d/dataset.test.jsonl")
    assert split_path(Path("/d/dataset.jsonl"), "train") == Path("/d/dataset.jsonl")


def _log_users(db: Path, users: range, per_user: int = 3) -> None:
    with UsageLogger(db) as logger:
        logger.log_many([
            {"query": f"user {u} question {i}", "response": f"answer {u}.{i}", "model": "m",
             "quality_score": 0.9, "user_feedback": 1, "assignment_key": f"user-{u}"}
            for u in users for i in range(per_user)
        ])  # fmt: skip


def _queries(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [next(m["content"] for m in line["messages"] if m["role"] == "user") for line in lines]


def _export(db: Path, out: Path, **config: Any) -> Any:
    with UsageLogger(db) as logger:
        return TrainingDataGenerator(logger, DataGeneratorConfig(**config)).generate(out)


def test_one_users_records_never_straddle_two_sets(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    _log_users(db, range(200))
    result = _export(db, tmp_path / "ds.jsonl", split=RATIOS)
    assert result.split is not None and sum(result.split.values()) == 600
    assert result.final_count == result.split["train"]
    owners: dict[str, set[str]] = {}
    for name in ("train", "validation", "test"):
        for query in _queries(split_path(tmp_path / "ds.jsonl", name)):
            owners.setdefault(query.split(" question")[0], set()).add(name)
    assert len(owners) == 200 and all(len(sets) == 1 for sets in owners.values())


def test_no_test_record_ever_becomes_training_data_as_data_grows(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    _log_users(db, range(100))
    _export(db, tmp_path / "run1.jsonl", split=RATIOS)
    _log_users(db, range(100, 300))  # more data, and more from earlier users
    with UsageLogger(db) as logger:
        logger.log_many([
            {"query": f"user {u} question 9", "response": "late", "model": "m",
             "quality_score": 0.9, "user_feedback": 1, "assignment_key": f"user-{u}"}
            for u in range(100)
        ])  # fmt: skip
    _export(db, tmp_path / "run2.jsonl", split=RATIOS)
    test_before = set(_queries(tmp_path / "run1.test.jsonl"))
    held_before = test_before | set(_queries(tmp_path / "run1.validation.jsonl"))
    assert test_before and not held_before & set(_queries(tmp_path / "run2.jsonl"))
    assert test_before <= set(_queries(tmp_path / "run2.test.jsonl"))
    # a test user's later records join them in the test set
    users_in_test = {q.split(" question")[0] for q in test_before}
    assert {f"{user} question 9" for user in users_in_test} <= set(
        _queries(tmp_path / "run2.test.jsonl")
    )


def test_training_items_equal_to_held_out_or_golden_ones_are_left_out(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    _log_users(db, range(60), per_user=1)
    held = [assign_split(f"a:{_hash(f'user-{u}')}", RATIOS) for u in range(60)]
    test_user = held.index("test")
    train_user = held.index("train")
    golden = tmp_path / "golden.jsonl"
    golden.write_text(json.dumps({"messages": [
        {"role": "user", "content": "the golden question"},
        {"role": "assistant", "content": "the golden answer"}]}) + "\n")  # fmt: skip
    with UsageLogger(db) as logger:
        logger.log_many([
            # a training user says exactly what a test user said: held out, not trained on
            {"query": f"user {test_user} question 0", "response": f"answer {test_user}.0",
             "model": "m", "quality_score": 0.8, "user_feedback": 1,
             "assignment_key": f"user-{train_user}"},
            {"query": "the golden question", "response": "the golden answer", "model": "m",
             "quality_score": 0.9, "user_feedback": 1, "assignment_key": f"user-{train_user}"},
        ])  # fmt: skip
    result = _export(db, tmp_path / "ds.jsonl", split=RATIOS, golden_path=golden)
    train = _queries(tmp_path / "ds.jsonl")
    assert "the golden question" not in train
    assert f"user {test_user} question 0" not in train
    assert f"user {test_user} question 0" in _queries(tmp_path / "ds.test.jsonl")
    assert result.decontaminated == {"golden": 1, "test": 0, "validation": 0}


def _hash(key: str) -> str:
    from afs.continuous.records import compute_assignment_hash

    digest = compute_assignment_hash(key)
    assert digest is not None
    return digest


def test_the_command_line_splits_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "u.db"
    _log_users(db, range(50))
    out = tmp_path / "ds.jsonl"
    assert main(["--db", str(db), "--json", "export", str(out), "--split", "0.8,0.1,0.1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["split"]) == {"train", "validation", "test"}
    assert report["split_paths"]["test"] == str(tmp_path / "ds.test.jsonl")
    assert len(_queries(tmp_path / "ds.test.jsonl")) == report["split"]["test"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--split", "0.8,0.1"], "three fractions"),
        (["--split", "0.8,x,0.1"], "three numbers"),
        (["--golden", "missing.jsonl"], "golden_path"),
    ],
)
def test_bad_split_flags_are_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    db = tmp_path / "u.db"
    _log_users(db, range(3))
    out = tmp_path / "ds.jsonl"
    assert main(["--db", str(db), "export", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.glob("ds*")) == []


def test_held_out_only_writes_the_evaluators_sets_and_no_training_set(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    _log_users(db, range(100))
    with UsageLogger(db) as logger:
        generator = TrainingDataGenerator(logger, DataGeneratorConfig(split=RATIOS))
        result = generator.generate(tmp_path / "ds.jsonl", held_out_only=True)
    assert not (tmp_path / "ds.jsonl").exists()
    assert result.split is not None
    assert len(_queries(tmp_path / "ds.test.jsonl")) == result.split["test"] > 0
    with UsageLogger(db) as logger, pytest.raises(InvalidFieldError, match="needs a split"):
        TrainingDataGenerator(logger).generate(tmp_path / "x.jsonl", held_out_only=True)
