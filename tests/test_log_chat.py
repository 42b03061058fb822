"""``UsageLogger.log_chat``: a chat logged with the OpenAI SDK's own objects — the request's
params and the ``ChatCompletion`` (or the stream) it returned — keeps the conversation,
and exports as exactly that conversation plus the response."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger
from tests.chat_examples import MESSAGES, TOOLS
from tests.collector.test_streams import TEXT_STREAM


def _completion(*answers: str) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {"id": "chatcmpl-9", "object": "chat.completion", "created": 1_760_000_000,
         "model": "gpt-4o-mini-2024-07-18",
         "choices": [{"index": i, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": text}}
                     for i, text in enumerate(answers)],
         "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}}
    )  # fmt: skip


def test_a_chat_logged_with_the_sdk_s_objects_exports_as_that_conversation(
    tmp_path: Path,
) -> None:
    request = {"model": "gpt-4o-mini", "messages": MESSAGES, "tools": TOOLS,
               "safety_identifier": "user-42"}  # fmt: skip
    with UsageLogger(tmp_path / "u.db") as logger:
        [record_id] = logger.log_chat(request, _completion("It sets the M flag."), latency_ms=310)
        record = logger.store.get(record_id)
        assert record is not None
        assert (record.model, record.token_count, record.latency_ms) == ("gpt-4o-mini", 9, 310)
        assert record.messages == MESSAGES and record.tools == TOOLS
        assert record.assignment_hash is not None
        out = tmp_path / "train.jsonl"
        config = DataGeneratorConfig(min_quality_score=0.0, min_user_feedback=None,
                                     format_type="openai")  # fmt: skip
        TrainingDataGenerator(logger, config).generate(out)
    [line] = [json.loads(text) for text in out.read_text().splitlines()]
    answer = {"role": "assistant", "content": "It sets the M flag."}
    assert line["messages"] == [*MESSAGES[:2], {**MESSAGES[2], "weight": 0}, MESSAGES[3], answer]
    assert line["tools"] == TOOLS


def test_each_choice_is_a_record_and_a_stream_is_assembled(tmp_path: Path) -> None:
    request: dict[str, Any] = {"model": "gpt-4o-mini", "n": 2, "messages": MESSAGES[:2]}
    with UsageLogger(tmp_path / "u.db") as logger:
        ids = logger.log_chat(request, _completion("M flag", "X flag"))
        assert [logger.store.get(i).response for i in ids] == ["M flag", "X flag"]  # type: ignore[union-attr]
        [streamed] = logger.log_chat({**request, "n": 1}, TEXT_STREAM)
        assert logger.store.get(streamed).response == "It sets the M flag."  # type: ignore[union-attr]


def test_a_body_that_is_not_a_chat_is_refused_saying_why(tmp_path: Path) -> None:
    with UsageLogger(tmp_path / "u.db") as logger:
        with pytest.raises(ValueError, match=r"log_chat: .*messages or prompt"):
            logger.log_chat({"model": "m"}, _completion("x"))
        assert list(logger.get_records()) == []


def test_a_tool_call_completion_is_logged_as_its_message(tmp_path: Path) -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup_opcode", "arguments": '{"opcode": "SEP"}'}}  # fmt: skip
    completion = ChatCompletion.model_validate(
        {"id": "chatcmpl-3", "object": "chat.completion", "created": 1_760_000_000,
         "model": "gpt-4o-mini-2024-07-18",
         "choices": [{"index": 0, "finish_reason": "tool_calls",
                      "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}
    )  # fmt: skip
    with UsageLogger(tmp_path / "u.db") as logger:
        [record_id] = logger.log_chat(
            {"model": "gpt-4o-mini", "messages": MESSAGES[:2]}, completion
        )
        record = logger.store.get(record_id)
    assert record is not None and record.response_message is not None
    assert record.response_message["tool_calls"] == [call]
