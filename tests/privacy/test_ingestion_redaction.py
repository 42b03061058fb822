"""Redaction as records are logged: nothing raw reaches the database, through the
library, the batch path, log_chat, feedback and the collector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import UsageLogger
from afs.continuous.collector.cli import build_parser, open_logger
from afs.continuous.privacy import RedactionConfig, RedactionError, Redactor
from afs.continuous.records import compute_dedupe_hash
from tests.collector.conftest import (
    AUTH,
    Serve,
    serve as serve,
)

EMAIL = "anna.smith@example.com"


def _raw(db: Path) -> str:
    """Every byte of the database file and its journal: the value must be in none."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*")).decode(
        "utf-8", "replace"
    )


def test_log_stores_the_redacted_texts_and_hashes_them(tmp_path: Path, redactor: Redactor) -> None:
    db = tmp_path / "u.db"
    with UsageLogger(db, redactor=redactor) as logger:
        record_id = logger.log(f"mail {EMAIL}", f"sent to {EMAIL}", "m", feedback_text=EMAIL)
        record = logger.store.get(record_id)
    assert record is not None
    assert (record.query, record.response) == ("mail <EMAIL_ADDRESS>", "sent to <EMAIL_ADDRESS>")
    assert record.feedback_text == "<EMAIL_ADDRESS>"
    assert record.dedupe_hash == compute_dedupe_hash(record.query, record.response)
    assert EMAIL not in _raw(db)


def test_a_conversation_and_a_tool_call_are_redacted_before_they_are_stored(
    tmp_path: Path, redactor: Redactor
) -> None:
    db = tmp_path / "u.db"
    call = {"id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"email": EMAIL})}}  # fmt: skip
    with UsageLogger(db, redactor=redactor) as logger:
        (record_id,) = logger.log_many([{
            "messages": [{"role": "system", "content": "help"},
                         {"role": "user", "content": f"I am {EMAIL}"}],
            "response": {"role": "assistant", "content": None, "tool_calls": [call]},
            "model": "m",
        }])  # fmt: skip
        record = logger.store.get(record_id)
    assert record is not None and record.messages is not None
    assert record.messages[1]["content"] == "I am <EMAIL_ADDRESS>"
    assert record.query == "I am <EMAIL_ADDRESS>"
    assert record.response_message is not None
    arguments = record.response_message["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"email": "<EMAIL_ADDRESS>"}
    assert EMAIL not in _raw(db)


def test_feedback_text_is_redacted(tmp_path: Path, redactor: Redactor) -> None:
    with UsageLogger(tmp_path / "u.db", redactor=redactor) as logger:
        record_id = logger.log("q", "r", "m")
        assert logger.record_feedback(record_id, -1, f"wrong, write to {EMAIL}")
        record = logger.store.get(record_id)
    assert record is not None and record.feedback_text == "wrong, write to <EMAIL_ADDRESS>"


def test_drop_is_refused_at_ingestion(tmp_path: Path) -> None:
    with pytest.raises(RedactionError, match="use replace or hash"):
        UsageLogger(tmp_path / "u.db", redactor=Redactor(RedactionConfig(operator="drop")))


def test_collect_redact_builds_a_redacting_logger(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--db", str(tmp_path / "u.db"), "--redact-entities", "EMAIL_ADDRESS"]
    )
    with open_logger(args) as logger:
        assert logger.redactor is not None
        assert logger.redactor.config.entities == ("EMAIL_ADDRESS",)


async def test_the_collector_stores_what_it_receives_redacted(
    serve: Serve, tmp_path: Path, redactor: Redactor
) -> None:
    db = tmp_path / "collected.db"
    logger = UsageLogger(db, redactor=redactor)
    pair: dict[str, Any] = {
        "request": {"model": "m", "messages": [{"role": "user", "content": f"I am {EMAIL}"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "Hi Anna"}}]},
    }
    try:
        async with serve(logger=logger) as (client, collector):
            answer = await client.post("/v1/openai", json=pair, headers=AUTH)
            assert answer.status == 200, await answer.text()
            (record_id,) = (await answer.json())["ids"]
            feedback = {"id": record_id, "feedback": -1, "text": f"mail {EMAIL}"}
            assert (await client.post("/v1/feedback", json=feedback, headers=AUTH)).status == 200
            record = collector.logger.store.get(record_id)
    finally:
        logger.close()
    assert record is not None and record.query == "I am <EMAIL_ADDRESS>"
    assert record.feedback_text == "mail <EMAIL_ADDRESS>"
    assert EMAIL not in _raw(db)
