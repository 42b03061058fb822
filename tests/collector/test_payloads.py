"""Reading V1, V2 and OpenAI bodies into a record's query and response."""

from __future__ import annotations

from typing import Any

import pytest

from afs.continuous.collector.payloads import (
    MAX_DEPTH,
    Answer,
    PayloadError,
    Question,
    answer_of,
    parse_json,
    question_of,
)

CHAT = {
    "model": "nayru",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 65816?"},
    ],
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (CHAT, Question("What is 65816?", context=[CHAT["messages"][0]], model="nayru")),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                     {"type": "image_url", "image_url": {}},
                                                     {"type": "text", "text": "b"}]}]},
         Question("a\nb")),
        ({"prompt": "Once upon", "model": "m"}, Question("Once upon", model="m")),
        ({"prompt": ["Once upon"]}, Question("Once upon")),
        ({"instances": ["a sentence"]}, Question("a sentence")),
        ({"instances": [[6.8, 2.8], [6.0, 3.4]]}, Question("[[6.8,2.8],[6.0,3.4]]")),
        ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]},
         Question("hi")),
        ({"inputs": [{"name": "a", "data": [1, 2]}, {"name": "b", "data": [3]}]},
         Question('{"a":[1,2],"b":[3]}')),
    ],
)  # fmt: skip
def test_a_request_gives_its_question(body: dict[str, Any], expected: Question) -> None:
    assert question_of(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model": "nayru-run-3", "usage": {"completion_tokens": 3},
          "choices": [{"message": {"role": "assistant", "content": "A CPU."}}]},
         Answer("A CPU.", model="nayru-run-3", token_count=3)),
        ({"choices": [{"text": " a time"}]}, Answer(" a time")),
        ({"predictions": [1, 1]}, Answer("[1,1]")),
        ({"predictions": ["positive"]}, Answer("positive")),
        ({"model_name": "iris", "outputs": [{"name": "p", "data": [0.9]}]},
         Answer("[0.9]", model="iris")),
        ({"error": "model not loaded"}, Answer("model not loaded", is_error=True)),
        ({"error": {"message": "overloaded", "type": "server_error"}},
         Answer("overloaded", is_error=True)),
    ],
)  # fmt: skip
def test_a_response_gives_its_answer(body: dict[str, Any], expected: Answer) -> None:
    assert answer_of(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({}, "none of messages or prompt"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"content": "x"}]}, r"messages\[0\] must be an object with a role"),
        ({"messages": [{"role": "system", "content": "x"}]}, "no user message"),
        ({"messages": [{"role": "user", "content": 5}]}, "must be text"),
        ({"prompt": ["a", "b"]}, "a list of one string"),
        ({"instances": []}, "instances is empty"),
        ({"inputs": [{"name": "x"}]}, "tensor object with data"),
        ({"messages": [{"role": "user", "content": "x"}], "model": 3}, "model must be a string"),
    ],
)
def test_a_request_we_cannot_read_says_why(body: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        question_of(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"choices": []}, "non-empty list"),
        ({"choices": [{"delta": {"content": "x"}}]}, "streamed chunk"),
        ({"choices": [{"index": 0}]}, "neither message.content"),
        ({"choices": [{"text": "x"}], "usage": {"completion_tokens": -1}}, "whole number"),
        ({"result": 1}, "none of choices"),
    ],
)
def test_a_response_we_cannot_read_says_why(body: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        answer_of(body)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff{}", "not UTF-8 text"),
        (b"{", "not valid JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": Infinity}', "Infinity is not a JSON number"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested more than"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b"\xef\xbb\xbf{}", "Unexpected UTF-8 BOM"),
        (b'{"a": "' + b"{" * 100 + b'", "b": ' + b"[" * 65 + b"]" * 65 + b"}", "nested more than"),
    ],
)
def test_strict_json_refuses_what_is_not_plain_json(raw: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_json(raw, what="the body")


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,  # as deep as allowed
        b'{"q": "' + b"{[" * 200 + b'"}',  # brackets in text are no nesting
        b'[{"a": [1]}, {"b": [2]}]',
    ],
)
def test_strict_json_takes_what_is_nested_no_deeper_than_allowed(raw: bytes) -> None:
    parse_json(raw, what="the body")


def test_strict_json_reads_plain_json() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true]}', what="b") == {
        "a": [1, 2.5, "x", None, True]
    }
