"""Records that hold their conversation (OpenAI chat messages and tools), on every backend:
read back whole, each distinct prefix stored once, checked before anything is written."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger
from afs.continuous.cli import EXIT_INVALID, EXIT_OK, main
from afs.continuous.errors import InvalidBatchError, InvalidFieldError
from afs.continuous.records import compute_dedupe_hash
from afs.continuous.store import UsageStore

SYSTEM = {"role": "system", "content": "You are nayru, a 65816 assembly tutor."}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_opcode",
            "parameters": {"type": "object", "properties": {"opcode": {"type": "string"}}},
        },
    }
]
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function",
     "function": {"name": "lookup_opcode", "arguments": '{"opcode": "SEP"}'}}]}  # fmt: skip
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": "SEP: set processor status bits"}


def _logger(store: UsageStore) -> UsageLogger:
    return UsageLogger(store=store)


def test_a_conversation_is_read_back_whole_with_its_tools(store: UsageStore) -> None:
    messages: list[dict[str, Any]] = [
        SYSTEM,
        {"role": "user", "content": "What does SEP #$20 do?"},
        CALL,
        RESULT,
    ]
    record_id = _logger(store).log(
        None, "It sets the M flag: 8-bit accumulator.", "nayru-v1", messages=messages, tools=TOOLS
    )
    record = store.get(record_id)
    assert record is not None
    assert record.messages == messages and record.tools == TOOLS
    assert record.query == "What does SEP #$20 do?"  # the last user turn
    assert record.context_hash is not None and record.conversation_hash is not None
    [listed] = list(_logger(store).get_records())
    assert listed.messages == messages and listed.tools == TOOLS


def test_a_record_without_a_conversation_is_as_before(store: UsageStore) -> None:
    record_id = _logger(store).log("q", "a", "m")
    record = store.get(record_id)
    assert record is not None
    assert (record.messages, record.tools, record.conversation_hash) == (None, None, None)
    assert record.dedupe_hash == compute_dedupe_hash("q", "a")


def _node_count(store_target: str) -> int:
    if store_target.startswith("postgresql"):
        with psycopg.connect(store_target) as conn:
            row = conn.execute("SELECT count(*) FROM conversation_nodes").fetchone()
    else:
        with sqlite3.connect(store_target) as conn:
            row = conn.execute("SELECT count(*) FROM conversation_nodes").fetchone()
    assert row is not None
    return int(row[0])


def test_a_chat_logged_turn_by_turn_stores_each_message_once(
    store: UsageStore, store_target: str
) -> None:
    """20 turns: 1 system prompt + 20 user turns + 19 assistant answers before the last,
    not the 400-odd messages of twenty whole conversations."""
    logger, messages = _logger(store), [SYSTEM]
    for turn in range(20):
        messages.append({"role": "user", "content": f"question {turn}"})
        logger.log(None, f"answer {turn}", "nayru-v1", messages=list(messages))
        messages.append({"role": "assistant", "content": f"answer {turn}"})
    assert _node_count(store_target) == 1 + 20 + 19
    [last] = list(logger.get_records(limit=1))
    assert len(last.messages or []) == 40 and last.query == "question 19"


def test_many_records_in_one_batch_share_their_prefixes(
    store: UsageStore, store_target: str
) -> None:
    batch = [
        {"response": f"a{i}", "model": "m",
         "messages": [SYSTEM, {"role": "user", "content": f"q{i}"}]}
        for i in range(5)
    ]  # fmt: skip
    ids = _logger(store).log_many(batch)
    assert _node_count(store_target) == 1 + 5
    read = [store.get(i) for i in ids]
    assert [(r.messages or [{}])[-1].get("content") for r in read if r] == [
        f"q{i}" for i in range(5)
    ]


def test_the_same_last_turn_in_another_conversation_is_not_a_duplicate(
    store: UsageStore,
) -> None:
    logger = _logger(store)
    ask = {"role": "user", "content": "and the X flag?"}
    first = [SYSTEM, {"role": "user", "content": "What does SEP #$20 do?"}, ask]
    other = [SYSTEM, {"role": "user", "content": "What does REP #$10 do?"}, ask]
    ids = [logger.log(None, "index registers", "m", messages=m) for m in (first, other, first)]
    hashes = [store.get(i).dedupe_hash for i in ids]  # type: ignore[union-attr]
    assert hashes[0] != hashes[1] and hashes[0] == hashes[2]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "x", "color": "red"}]}, "messages[0].color"),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]},
         "messages[0].tool_calls[0]"),
        ({"messages": [{"role": "system", "content": "x"}]}, "query"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
         "tools[0]"),
        ({"query": "q", "tools": []}, "tools"),
        ({"messages": [{"role": "user", "content": "x"}], "context": "c"}, "context"),
        ({"messages": [{"role": "user", "content": "x" * 4_000_001}]}, "messages"),
    ],
    ids=["not-a-list", "empty", "role", "no-content", "unknown-key", "part-without-type",
         "tool-without-call-id", "bad-tool-call", "no-user-turn", "bad-tool", "tools-alone",
         "context-and-messages", "too-long"],
)  # fmt: skip
def test_a_bad_conversation_is_refused_by_field_and_nothing_is_written(
    store: UsageStore, record: dict[str, Any], field: str
) -> None:
    logger = _logger(store)
    good = {"query": "q", "response": "a", "model": "m"}
    with pytest.raises(InvalidBatchError) as caught:
        logger.log_many([good, {"response": "a", "model": "m", **record}])
    assert caught.value.index == 1
    cause = caught.value.cause
    assert isinstance(cause, InvalidFieldError) and cause.field == field
    assert list(logger.get_records()) == []


def test_the_buffered_logger_keeps_the_conversation(store: UsageStore) -> None:
    logger = _logger(store)
    messages = [SYSTEM, {"role": "user", "content": "And REP?"}]
    with logger.buffered() as buffered:
        record_id = buffered.log(None, "It clears them.", "m", messages=messages, tools=TOOLS)
        buffered.flush()
    record = store.get(record_id)
    assert record is not None and record.messages == messages and record.tools == TOOLS


def test_import_reads_conversations_and_a_bad_one_is_named_by_line(tmp_path: Path) -> None:
    lines = [
        {"response": "8-bit accumulator", "model": "m",
         "messages": [SYSTEM, {"role": "user", "content": "SEP #$20?"}], "tools": TOOLS},
        {"response": "x", "model": "m", "messages": [{"role": "user"}]},
    ]  # fmt: skip
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text(json.dumps(lines[0]) + "\n")
    bad.write_text(json.dumps(lines[0]) + "\n" + json.dumps(lines[1]) + "\n")
    db = str(tmp_path / "u.db")
    assert main(["--db", db, "import", str(good)]) == EXIT_OK
    assert main(["--db", db, "import", str(bad)]) == EXIT_INVALID
    with UsageLogger(db) as logger:
        [record] = list(logger.get_records())
    assert record.query == "SEP #$20?" and record.tools == TOOLS


CONVERSATION: list[dict[str, Any]] = [
    SYSTEM, {"role": "user", "content": "What does SEP #$20 do?"}, CALL, RESULT,
]  # fmt: skip
ANSWER = "It sets the M flag: the accumulator becomes 8 bits wide."


def _export(logger: UsageLogger, tmp_path: Path, **config: Any) -> list[dict[str, Any]]:
    out = tmp_path / "train.jsonl"
    settings = {"min_quality_score": 0.0, "min_user_feedback": None, **config}
    TrainingDataGenerator(logger, DataGeneratorConfig(**settings)).generate(out)
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("format_type", ["chatml", "openai"])
def test_a_conversation_exports_as_exactly_that_conversation_and_the_response(
    store: UsageStore, tmp_path: Path, format_type: str
) -> None:
    logger = _logger(store)
    logger.log(None, ANSWER, "nayru-v1", messages=CONVERSATION, tools=TOOLS)
    [line] = _export(logger, tmp_path, format_type=format_type)
    assert line["messages"] == [*CONVERSATION[:2], {**CALL, "weight": 0}, RESULT,
                                {"role": "assistant", "content": ANSWER}]  # fmt: skip
    assert line["tools"] == TOOLS


def test_train_on_all_makes_every_assistant_turn_a_target(
    store: UsageStore, tmp_path: Path
) -> None:
    logger = _logger(store)
    logger.log(None, ANSWER, "nayru-v1", messages=CONVERSATION, tools=TOOLS)
    [line] = _export(logger, tmp_path, format_type="openai", train_on="all")
    assert all("weight" not in message for message in line["messages"])


def test_turnless_formats_write_the_conversation_into_the_prompt(
    store: UsageStore, tmp_path: Path
) -> None:
    logger = _logger(store)
    logger.log(None, ANSWER, "nayru-v1", messages=CONVERSATION, tools=TOOLS)
    [line] = _export(logger, tmp_path, format_type="alpaca")
    assert line["instruction"] == (
        f"system: {SYSTEM['content']}\nuser: What does SEP #$20 do?\n"
        "assistant: [calls lookup_opcode]\ntool: SEP: set processor status bits"
    )
    assert line["output"] == ANSWER


def test_export_dedupes_whole_conversations_not_last_turns(
    store: UsageStore, tmp_path: Path
) -> None:
    logger = _logger(store)
    other: list[dict[str, Any]] = [
        SYSTEM,
        {"role": "user", "content": "Is REP the opposite?"},
        CALL,
        RESULT,
    ]
    for messages in (CONVERSATION, CONVERSATION, other):
        logger.log(None, ANSWER, "nayru-v1", messages=messages)
    lines = _export(logger, tmp_path, format_type="openai")
    assert len(lines) == 2  # the repeated conversation once, the other one kept


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (CALL, '[tool calls] lookup_opcode({"opcode": "SEP"})'),
        ({"role": "assistant", "content": None, "refusal": "I can't help with that."},
         "[refusal] I can't help with that."),
        ({"role": "assistant", "content": "Let me look.", "tool_calls": CALL["tool_calls"]},
         'Let me look.\n[tool calls] lookup_opcode({"opcode": "SEP"})'),
    ],
    ids=["tool-call", "refusal", "text-and-tool-call"],
)  # fmt: skip
def test_a_response_that_is_a_message_is_kept_and_exported_as_it_was(
    store: UsageStore, tmp_path: Path, message: dict[str, Any], text: str
) -> None:
    logger = _logger(store)
    messages = CONVERSATION[:2]
    record_id = logger.log(None, message, "nayru-v1", messages=messages, tools=TOOLS)
    record = store.get(record_id)
    assert record is not None
    assert record.response_message == message and record.response == text
    [line] = _export(logger, tmp_path, format_type="openai")
    assert line["messages"] == [*messages, message]


@pytest.mark.parametrize(
    ("message", "field"),
    [({"role": "user", "content": "x"}, "response.role"),
     ({"role": "assistant", "content": None}, "response"),
     ({"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
      "response.tool_calls[0]"),
     ({"role": "assistant", "content": {}}, "response.content")],
    ids=["not-assistant", "empty", "bad-tool-call", "bad-content"],
)  # fmt: skip
def test_a_response_message_that_is_not_one_is_refused(
    store: UsageStore, message: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidBatchError) as caught:
        _logger(store).log_many([{"query": "q", "response": message, "model": "m"}])
    assert caught.value.cause.field == field


def test_an_unknown_latency_is_stored_as_unknown_and_counts_nowhere(store: UsageStore) -> None:
    logger = _logger(store)
    unknown, known = logger.log_many([
        {"query": "q1", "response": "a", "model": "m", "latency_ms": None},
        {"query": "q2", "response": "a", "model": "m", "latency_ms": 200.0},
    ])  # fmt: skip
    assert store.get(unknown).latency_ms is None  # type: ignore[union-attr]
    assert store.get(known).latency_ms == 200.0  # type: ignore[union-attr]
    stats = logger.get_statistics()
    assert stats["total"] == 2 and stats["avg_latency_ms"] == pytest.approx(200.0)
