"""Training-sample formats: writing samples, and reading them back for the rehearsal buffer.

Pure functions; the generator does the file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from afs.continuous.conversations import chain, text_of
from afs.continuous.errors import InvalidFieldError
from afs.continuous.records import compute_dedupe_hash

FORMAT_TYPES = ("chatml", "alpaca", "completion", "openai")


@dataclass(frozen=True)
class Sample:
    query: str
    response: str
    quality_score: float | None = None
    user_feedback: int | None = None
    model: str | None = None
    expert: str | None = None
    messages: list[dict[str, Any]] | None = None
    """The conversation before the response (None: the query alone)."""
    tools: list[dict[str, Any]] | None = None
    response_message: dict[str, Any] | None = None
    """The response as the assistant message it was (tool calls, a refusal)."""


def format_sample(format_type: str, sample: Sample, *, train_on: str = "last") -> dict[str, Any]:
    """One output line (as a dict) in ``format_type``.

    A conversation is written whole in ``chatml`` and ``openai`` (OpenAI's fine-tuning
    format: ``messages``, and ``tools`` when offered); with ``train_on="last"`` only the
    logged response is a target, earlier assistant turns carrying ``"weight": 0``.
    ``alpaca`` and ``completion`` have no turns: the conversation before the last user
    turn is written into the instruction (prompt) as ``role: text`` lines.
    """
    if format_type == "chatml":
        line = {
            "messages": _messages(sample, train_on),
            "metadata": {
                "quality_score": sample.quality_score,
                "user_feedback": sample.user_feedback,
                "model": sample.model,
                "expert": sample.expert,
            },
        }
        return _with_tools(line, sample)
    if format_type == "openai":
        return _with_tools({"messages": _messages(sample, train_on)}, sample)
    if format_type == "alpaca":
        return {
            "instruction": _flat_prompt(sample),
            "input": "",
            "output": sample.response,
            "quality_score": sample.quality_score,
        }
    if format_type == "completion":
        return {
            "text": f"{_flat_prompt(sample)}\n\n{sample.response}",
            "quality_score": sample.quality_score,
        }
    raise ValueError(f"format_type must be one of {', '.join(FORMAT_TYPES)}, got {format_type!r}")


def _messages(sample: Sample, train_on: str) -> list[dict[str, Any]]:
    answer = dict(sample.response_message or {"role": "assistant", "content": sample.response})
    if sample.messages is None:
        return [{"role": "user", "content": sample.query}, answer]
    before = [
        {**m, "weight": 0} if train_on == "last" and m.get("role") == "assistant" else dict(m)
        for m in sample.messages
    ]
    return [*before, answer]


def _with_tools(line: dict[str, Any], sample: Sample) -> dict[str, Any]:
    if sample.tools:
        line["tools"] = sample.tools
    return line


def _flat_prompt(sample: Sample) -> str:
    """The prompt of a turnless format: the query, after the conversation before it (one
    ``role: text`` line per earlier message, tool calls named)."""
    if sample.messages is None:
        return sample.query
    lines = []
    for message in sample.messages:
        text = text_of(message.get("content"))
        calls = [c["function"]["name"] for c in message.get("tool_calls") or []]
        if calls:
            text = (text + " " if text else "") + f"[calls {', '.join(calls)}]"
        lines.append(f"{message.get('role')}: {text}")
    return "\n".join(lines)


def parse_sample(data: Any) -> Sample:
    """Read a sample written in any of the formats; raise ValueError saying what is wrong.

    Chat samples use their first user message and the first assistant reply after it.
    Completion text is split at its first blank line, as it was written.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if "messages" in data:
        return _parse_chat(data)
    if "instruction" in data:
        instruction, extra, output = (
            data["instruction"],
            data.get("input") or "",
            data.get("output"),
        )
        if (
            not isinstance(instruction, str)
            or not isinstance(output, str)
            or not (_text(instruction) and _text(output) and isinstance(extra, str))
        ):
            raise ValueError("alpaca sample needs non-empty string 'instruction' and 'output'")
        query = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return Sample(query, output, quality_score=_score(data.get("quality_score")))
    if "text" in data:
        text = data["text"]
        if not _text(text) or "\n\n" not in text:
            raise ValueError(
                "completion sample needs 'text' with a blank line between prompt and answer"
            )
        query, response = text.split("\n\n", 1)
        if not query.strip() or not response.strip():
            raise ValueError("completion sample has an empty prompt or answer")
        return Sample(query, response, quality_score=_score(data.get("quality_score")))
    raise ValueError(
        "not a chatml/openai ('messages'), alpaca ('instruction') or completion ('text') sample"
    )


def _parse_chat(data: dict[str, Any]) -> Sample:
    """The last assistant message with text is the answer and the last user message
    before it the query; anything else before it is the conversation (a plain exchange,
    one user message and its answer, has none). Weights written for training are read
    as what they are, not as part of a message."""
    messages = data["messages"]
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list")
    if not all(isinstance(m, dict) for m in messages):
        raise ValueError("each message must be an object with 'role' and 'content'")
    answer = next(
        (i for i in range(len(messages) - 1, -1, -1)
         if messages[i].get("role") == "assistant" and _text(messages[i].get("content"))),
        None,
    )  # fmt: skip
    turn = None
    if answer is not None:
        users = [
            i for i in range(answer)
            if messages[i].get("role") == "user" and _text(text_of(messages[i].get("content")))
        ]  # fmt: skip
        turn = users[-1] if users else None
    if answer is None or turn is None:
        raise ValueError("chat sample needs a user message followed by an assistant message")
    before = [{k: v for k, v in m.items() if k != "weight"} for m in messages[:answer]]
    conversation = None if len(before) == 1 else before
    tools = data.get("tools") if conversation is not None else None
    raw_meta = data.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    feedback = meta.get("user_feedback")
    return Sample(
        text_of(messages[turn].get("content")),
        messages[answer]["content"],
        quality_score=_score(meta.get("quality_score")),
        user_feedback=feedback
        if feedback in (-1, 0, 1) and not isinstance(feedback, bool)
        else None,
        model=meta.get("model") if isinstance(meta.get("model"), str) else None,
        expert=meta.get("expert") if isinstance(meta.get("expert"), str) else None,
        messages=conversation,
        tools=tools if isinstance(tools, list) and tools else None,
    )


def sample_digest(sample: Sample) -> str:
    """The dedupe hash a record of this sample would carry (its conversation included)."""
    conversation = None
    if sample.messages is not None:
        try:
            conversation = chain(sample.messages, sample.tools)[-1].hash
        except (InvalidFieldError, IndexError):
            conversation = None
    return compute_dedupe_hash(sample.query, sample.response, conversation)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _score(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None
