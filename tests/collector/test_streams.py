"""Streamed OpenAI responses, as a gateway forwards them: the chunks (a JSON list) or the
SSE text, assembled as the SDK assembles a stream — built with the ``openai`` package's
own types, and compared with the SDK's own accumulation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.lib.streaming.chat._completions import ChatCompletionStreamState
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
)

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator
from afs.continuous.collector.payloads import PayloadError, assembled_response
from tests.chat_examples import MESSAGES, TOOLS
from tests.collector.conftest import AUTH, Serve


def _chunk(delta: dict[str, Any], *, finish: str | None = None, index: int = 0,
           usage: dict[str, int] | None = None) -> ChatCompletionChunk:  # fmt: skip
    choices = [] if usage else [{"index": index, "delta": delta, "finish_reason": finish}]
    return ChatCompletionChunk.model_validate(
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_760_000_000,
         "model": "gpt-4o-mini-2024-07-18", "choices": choices, "usage": usage}
    )  # fmt: skip


TEXT_STREAM = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "It sets "}),
    _chunk({"content": "the M flag."}),
    _chunk({}, finish="stop"),
    _chunk({}, usage={"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}),
]
TOOL_STREAM = [
    _chunk({"role": "assistant", "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "lookup_opcode", "arguments": ""}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"opcode"'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "SEP"}'}}]}),
    _chunk({}, finish="tool_calls"),
]  # fmt: skip


def _wire(chunks: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json", exclude_none=True) for c in chunks]


def _sse(chunks: list[ChatCompletionChunk]) -> str:
    events = [f"data: {json.dumps(c)}\n\n" for c in _wire(chunks)]
    return ": keep-alive\n\n" + "".join(events) + "data: [DONE]\n\n"


def _sdk(chunks: list[ChatCompletionChunk]) -> Any:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    return state.get_final_completion()


@pytest.mark.parametrize("stream", [TEXT_STREAM, TOOL_STREAM], ids=["text", "tool-call"])
@pytest.mark.parametrize("form", ["chunks", "sse"])
def test_a_stream_is_assembled_as_the_sdk_assembles_it(
    stream: list[ChatCompletionChunk], form: str
) -> None:
    merged = assembled_response(_wire(stream) if form == "chunks" else _sse(stream))
    sdk = _sdk(stream).choices[0]
    [choice] = merged["choices"]
    assert choice["message"].get("content") == sdk.message.content
    assert choice["finish_reason"] == sdk.finish_reason
    calls = [
        {"id": c.id, "type": c.type,
         "function": {"name": c.function.name, "arguments": c.function.arguments}}
        for c in sdk.message.tool_calls or []
    ]  # fmt: skip
    assert choice["message"].get("tool_calls", []) == calls
    if stream is TEXT_STREAM:
        assert merged["usage"]["completion_tokens"] == 5  # from the last chunk


@pytest.mark.parametrize(
    ("value", "message"),
    [("hello", "holds no SSE data events"), ("data: {oops\n\n", "not valid JSON"),
     ([1, 2], "chunks as JSON objects"),
     ([{"choices": [{"delta": {"tool_calls": [{"function": {}}]}}]}], "needs its index")],
    ids=["no-events", "bad-event", "not-objects", "tool-call-without-index"],
)  # fmt: skip
def test_a_broken_stream_is_refused_saying_what_is_wrong(value: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        assembled_response(value)


@pytest.mark.parametrize("form", ["chunks", "sse"])
async def test_the_collector_stores_a_streamed_answer_whole(serve: Serve, form: str) -> None:
    pair = {
        "request": {"model": "gpt-4o-mini", "stream": True,
                    "messages": [{"role": "user", "content": "What does SEP #$20 do?"}]},
        "response": _wire(TEXT_STREAM) if form == "chunks" else _sse(TEXT_STREAM),
    }  # fmt: skip
    async with serve() as (client, collector):
        answer = await client.post("/v1/openai", json=pair, headers=AUTH)
        assert answer.status == 200, await answer.text()
        (record_id,) = (await answer.json())["ids"]
        record = collector.logger.store.get(record_id)
    assert record is not None
    assert (record.response, record.token_count, record.model) == (
        "It sets the M flag.",
        5,
        "gpt-4o-mini",
    )


async def test_a_chat_posted_with_the_sdk_s_objects_exports_as_that_conversation(
    serve: Serve, tmp_path: Path
) -> None:
    """The done-when path through the collector: a system prompt, a tool call and its
    result, the SDK's ChatCompletion as the gateway received it, exported exactly."""
    messages, tools = MESSAGES, TOOLS
    completion = ChatCompletion.model_validate(
        {"id": "chatcmpl-5", "object": "chat.completion", "created": 1_760_000_000,
         "model": "gpt-4o-mini-2024-07-18",
         "choices": [{"index": 0, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": "8-bit accumulator."}}]}
    )  # fmt: skip
    pair = {
        "request": {"model": "gpt-4o-mini", "messages": messages, "tools": tools},
        "response": completion.model_dump(mode="json", exclude_none=True),
        "latency_ms": 420,
    }
    async with serve() as (client, collector):
        answer = await client.post("/v1/openai", json=pair, headers=AUTH)
        assert answer.status == 200, await answer.text()
        out = tmp_path / "train.jsonl"
        config = DataGeneratorConfig(
            min_quality_score=0.0, min_user_feedback=None, format_type="openai"
        )
        TrainingDataGenerator(collector.logger, config).generate(out)
    [line] = [json.loads(text) for text in out.read_text().splitlines()]
    answer_message = {"role": "assistant", "content": "8-bit accumulator."}
    assert line["messages"] == [*messages[:2], {**messages[2], "weight": 0}, messages[3],
                                answer_message]  # fmt: skip
    assert line["tools"] == tools
