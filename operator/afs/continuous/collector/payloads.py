"""What a model server's request and response say, as a usage record's query and response.

Servers speak a few shapes: KServe's V1 protocol (``instances`` / ``predictions``), the
V2 or Open Inference Protocol (``inputs`` / ``outputs``), and OpenAI-compatible chat and
completions (vLLM, TGI, KServe's OpenAI endpoints). Pure functions: a parsed body in,
text out, or a :class:`PayloadError` that says what was missing. Text bodies give their
text; anything else (a tensor, a table row) is kept as compact JSON, so the record still
counts for the A/B statistics even when it is not training text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class PayloadError(ValueError):
    """A body that is not valid JSON, or not a shape the collector reads."""


#: how deep a body may nest: deeper is no inference payload, and json's recursion would
#: otherwise end in RecursionError
MAX_DEPTH = 64


def parse_json(raw: bytes, *, what: str) -> Any:
    """Strict JSON: UTF-8, no duplicate keys (which one would count?), no NaN or
    Infinity (not JSON), nesting at most :data:`MAX_DEPTH` deep."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{what} is not UTF-8 text (byte {exc.start + 1})") from None
    try:
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _STRICT.decode(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise PayloadError(f"{what} is nested too deeply") from None
    # each level of nesting opens with a bracket: with no more brackets than levels
    # allowed (a typical record has one), the walk need not be taken
    if text.count("{") + text.count("[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise PayloadError(f"{what} is nested more than {MAX_DEPTH} levels deep")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise PayloadError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not a JSON number")


#: made once: ``json.loads`` with hooks builds a decoder per call, 1.2 µs of a
#: typical record's 3.7 µs parse
_STRICT = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return depth
        nested: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nested.extend(item.values())
            elif isinstance(item, list):
                nested.extend(item)
        level = nested
    return depth - 1


@dataclass(frozen=True)
class Question:
    """What was asked: the text, what came before it (earlier chat turns), the model
    the client named."""

    query: str
    context: Any = None
    model: str | None = None


@dataclass(frozen=True)
class Answer:
    """What came back: the text, the model that says it answered, tokens generated, and
    whether it was an error."""

    response: str
    model: str | None = None
    token_count: int | None = None
    is_error: bool = False
    message: dict[str, Any] | None = None
    """A chat answer that is more than text (tool calls, a refusal), as its message."""


def question_of(body: Any) -> Question:
    """The query of a V1, V2 or OpenAI request body."""
    if not isinstance(body, dict):
        raise PayloadError("the request body must be a JSON object")
    model = _optional_name(body.get("model"), "model")
    if "messages" in body:
        return _chat_question(body["messages"], model)
    if "prompt" in body:
        return Question(_prompt_text(body["prompt"]), model=model)
    if "instances" in body:
        return Question(_as_text(body["instances"], "instances"), model=model)
    if "inputs" in body:
        return Question(_tensors_text(body["inputs"], "inputs"), model=model)
    raise PayloadError(
        "the request body has none of messages or prompt (OpenAI), instances (V1) or inputs (V2)"
    )


def answer_of(body: Any) -> Answer:
    """The response of a V1, V2 or OpenAI response body (an ``error`` body is an error)."""
    if not isinstance(body, dict):
        raise PayloadError("the response body must be a JSON object")
    model = _optional_name(body.get("model") or body.get("model_name"), "model")
    if "error" in body and not any(k in body for k in ("choices", "predictions", "outputs")):
        error = body["error"]
        message = error.get("message") if isinstance(error, dict) else error
        return Answer(_as_text(message, "error"), model=model, is_error=True)
    if "choices" in body:
        return _choices_answer(body, model)
    if "predictions" in body:
        return Answer(_as_text(body["predictions"], "predictions"), model=model)
    if "outputs" in body:
        return Answer(_tensors_text(body["outputs"], "outputs"), model=model)
    raise PayloadError(
        "the response body has none of choices (OpenAI), predictions (V1), outputs (V2) or error"
    )


def _chat_question(messages: Any, model: str | None) -> Question:
    if not isinstance(messages, list) or not messages:
        raise PayloadError("messages must be a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise PayloadError(f"messages[{index}] must be an object with a role")
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        raise PayloadError("messages has no user message")
    last = users[-1]
    query = _content_text(messages[last].get("content"), f"messages[{last}].content")
    earlier = messages[:last]
    return Question(query, context=earlier or None, model=model)


def _content_text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of parts whose text parts count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ]  # fmt: skip
        if texts:
            return "\n".join(texts)
    raise PayloadError(f"{where} must be text or a list with text parts")


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    raise PayloadError("prompt must be a string (or a list of one string)")


def _choices_answer(body: dict[str, Any], model: str | None) -> Answer:
    return choice_answers(body, model)[0]


def choice_answers(body: dict[str, Any], model: str | None) -> list[Answer]:
    """Each choice of an OpenAI response (``n > 1`` gives several), in order. The token
    count is the response's ``usage.completion_tokens`` for a single choice; with several
    it covers them all, so no choice is given it."""
    choices = body["choices"]
    if not isinstance(choices, list) or not choices:
        raise PayloadError("choices must be a non-empty list of objects")
    texts: list[tuple[str, dict[str, Any] | None]] = []
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise PayloadError("choices must be a non-empty list of objects")
        message = choice.get("message")
        if isinstance(message, dict) and (message.get("tool_calls") or message.get("refusal")):
            # kept as the message it is; the record's response is made from it
            kept = {k: v for k, v in message.items() if k in _ASSISTANT_KEYS and v is not None}
            texts.append(("", {"role": "assistant", "content": None, **kept}))
        elif isinstance(message, dict):
            where = f"choices[{index}].message.content"
            texts.append((_content_text(message.get("content"), where), None))
        elif isinstance(choice.get("text"), str):
            texts.append((choice["text"], None))
        elif "delta" in choice:
            raise PayloadError(
                "a streamed chunk: send the whole stream (its chunks as a list, or its SSE "
                "text) or the assembled response"
            )
        else:
            raise PayloadError(f"choices[{index}] has neither message.content (chat) nor text")
    usage = body.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if tokens is not None and (type(tokens) is not int or tokens < 0):
        raise PayloadError("usage.completion_tokens must be a whole number")
    shared = tokens if len(texts) == 1 else None
    return [Answer(text, model=model, token_count=shared, message=kept) for text, kept in texts]


#: the keys of an assistant message a record keeps (the SDK adds others, e.g. annotations)
_ASSISTANT_KEYS = ("role", "content", "tool_calls", "refusal", "name")


def _as_text(value: Any, where: str) -> str:
    """A lone string as itself (a text model's one instance); anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if value is None or value == []:
        raise PayloadError(f"{where} is empty")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _tensors_text(tensors: Any, where: str) -> str:
    """V2 tensors: one BYTES tensor holding one string is text; others, their data by name."""
    if not isinstance(tensors, list) or not tensors:
        raise PayloadError(f"{where} must be a non-empty list of tensors")
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or "data" not in tensor:
            raise PayloadError(f"{where}[{index}] must be a tensor object with data")
    if len(tensors) == 1:
        data = tensors[0]["data"]
        if isinstance(data, list) and len(data) == 1 and isinstance(data[0], str):
            return data[0]
        return _as_text(data, f"{where}[0].data")
    named = {str(t.get("name", i)): t["data"] for i, t in enumerate(tensors)}
    return json.dumps(named, separators=(",", ":"), ensure_ascii=False)


def _optional_name(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where} must be a string")
    return value or None


def assembled_response(value: Any) -> Any:
    """An OpenAI chat response as a gateway may forward it — whole, as the list of its
    streamed chunks, or as the SSE text of the stream (``data: {…}`` lines, ``data:
    [DONE]``) — as one ``chat.completion``, merged as the SDK merges a stream: content
    and refusal deltas appended, tool-call deltas by their index (the name set, the
    arguments appended), each choice's last ``finish_reason``, the usage of the chunk
    that carries it (the last, with ``stream_options.include_usage``). Anything else is
    returned as it is."""
    if isinstance(value, str):
        chunks = _sse_chunks(value)
    elif isinstance(value, list):
        chunks = value
    elif isinstance(value, dict) and value.get("object") == "chat.completion.chunk":
        chunks = [value]
    else:
        return value
    if not chunks or not all(isinstance(c, dict) for c in chunks):
        raise PayloadError("a streamed response must hold its chunks as JSON objects")
    first = chunks[0]
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for delta_choice in chunk.get("choices") or []:
            if not isinstance(delta_choice, dict):
                raise PayloadError("a chunk's choices must be objects")
            _merge_choice(choices, delta_choice)
    merged: dict[str, Any] = {
        "id": first.get("id"), "object": "chat.completion", "created": first.get("created"),
        "model": first.get("model"),
        "choices": [choices[i] for i in sorted(choices)],
    }  # fmt: skip
    if usage is not None:
        merged["usage"] = usage
    return merged


def _merge_choice(choices: dict[int, dict[str, Any]], delta_choice: dict[str, Any]) -> None:
    index = delta_choice.get("index", 0)
    if type(index) is not int:
        raise PayloadError("a chunk's choice index must be a whole number")
    choice = choices.setdefault(
        index, {"index": index, "message": {"role": "assistant", "content": None},
                "finish_reason": None},
    )  # fmt: skip
    message = choice["message"]
    delta = delta_choice.get("delta") or {}
    if not isinstance(delta, dict):
        raise PayloadError("a chunk's delta must be an object")
    for key in ("content", "refusal"):
        piece = delta.get(key)
        if isinstance(piece, str):
            message[key] = (message.get(key) or "") + piece
    if isinstance(delta.get("role"), str):
        message["role"] = delta["role"]
    for call in delta.get("tool_calls") or []:
        _merge_tool_call(message, call)
    if delta_choice.get("finish_reason") is not None:
        choice["finish_reason"] = delta_choice["finish_reason"]


def _merge_tool_call(message: dict[str, Any], call: Any) -> None:
    if not isinstance(call, dict) or type(call.get("index")) is not int:
        raise PayloadError("a streamed tool call needs its index")
    calls = message.setdefault("tool_calls", [])
    while len(calls) <= call["index"]:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    merged = calls[call["index"]]
    if call.get("id"):
        merged["id"] = call["id"]
    if call.get("type"):
        merged["type"] = call["type"]
    function = call.get("function") or {}
    if isinstance(function.get("name"), str):
        merged["function"]["name"] += function["name"]
    if isinstance(function.get("arguments"), str):
        merged["function"]["arguments"] += function["arguments"]


def _sse_chunks(text: str) -> list[Any]:
    """The JSON events of an SSE stream (``data:`` lines; ``[DONE]`` ends it)."""
    chunks = []
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue  # comments, event names, blank separators
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            break
        if data:
            chunks.append(parse_json(data.encode(), what="an SSE event"))
    if not chunks:
        raise PayloadError("the response text holds no SSE data events")
    return chunks
