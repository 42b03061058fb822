"""Corrections, the same on both stores: stored with feedback in one transaction, read
back as assistant messages, erased with their record; and refused when malformed."""

from __future__ import annotations

from typing import Any

import pytest

from afs.continuous import UsageLogger
from afs.continuous.cli import main
from afs.continuous.errors import InvalidFieldError

CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "refund", "arguments": "{}"}}
    ],
}


@pytest.mark.parametrize(
    ("correction", "stored"),
    [
        ("Use REP #$30 first.", {"role": "assistant", "content": "Use REP #$30 first."}),
        (CALL, CALL),
    ],
    ids=["text", "tool-call"],
)
def test_a_correction_is_stored_with_the_feedback(
    store_target: str, correction: Any, stored: dict[str, Any]
) -> None:
    with UsageLogger(store_target) as logger:
        record_id = logger.log("how do I set 16-bit mode?", "SEP #$20", "m")
        assert logger.record_feedback(record_id, -1, "wrong flag", correction)
        assert logger.store.corrections([record_id]) == {record_id: stored}
        record = logger.store.get(record_id)
        assert record is not None and record.user_feedback == -1
        logger.record_feedback(record_id, -1, correction="REP #$30")  # corrected again
        assert logger.store.corrections()[record_id]["content"] == "REP #$30"
        logger.store.erase_records([record_id])
        assert logger.store.corrections() == {}


def test_no_correction_is_stored_for_an_unknown_record(store_target: str) -> None:
    with UsageLogger(store_target) as logger:
        assert not logger.record_feedback("nope", -1, correction="x")
        assert logger.store.corrections() == {}


@pytest.mark.parametrize(
    ("correction", "field"),
    [
        ("", "correction"),
        ({"role": "user", "content": "x"}, "correction.role"),
        ({"role": "assistant", "content": None}, "correction"),
        ({"role": "assistant", "content": "x", "colour": "red"}, "correction.colour"),
        (42, "correction"),
    ],
)
def test_a_malformed_correction_is_refused_and_nothing_written(
    tmp_path: Any, correction: Any, field: str
) -> None:
    with UsageLogger(tmp_path / "u.db") as logger:
        record_id = logger.log("q", "r", "m")
        with pytest.raises(InvalidFieldError) as info:
            logger.record_feedback(record_id, -1, correction=correction)
        assert info.value.field == field
        record = logger.store.get(record_id)
        assert record is not None and record.user_feedback is None
        assert logger.store.corrections() == {}


def test_the_command_line_records_a_correction(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "u.db"
    with UsageLogger(db) as logger:
        record_id = logger.log("q", "r", "m")
    assert main(["--db", str(db), "feedback", record_id, "-1", "--correction", "better"]) == 0
    with UsageLogger(db) as logger:
        assert logger.store.corrections()[record_id]["content"] == "better"
