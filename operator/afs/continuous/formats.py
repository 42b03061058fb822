"""Training-sample formats: writing samples, and reading them back for the rehearsal buffer.

Pure functions; the generator does the file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FORMAT_TYPES = ("chatml", "alpaca", "completion", "openai")


@dataclass(frozen=True)
class Sample:
    query: str
    response: str
    quality_score: float | None = None
    user_feedback: int | None = None
    model: str | None = None
    expert: str | None = None


def format_sample(format_type: str, sample: Sample) -> dict[str, Any]:
    """One output line (as a dict) in ``format_type``."""
    if format_type == "chatml":
        return {
            "messages": _messages(sample),
            "metadata": {
                "quality_score": sample.quality_score,
                "user_feedback": sample.user_feedback,
                "model": sample.model,
                "expert": sample.expert,
            },
        }
    if format_type == "openai":
        return {"messages": _messages(sample)}
    if format_type == "alpaca":
        return {
            "instruction": sample.query,
            "input": "",
            "output": sample.response,
            "quality_score": sample.quality_score,
        }
    if format_type == "completion":
        return {
            "text": f"{sample.query}\n\n{sample.response}",
            "quality_score": sample.quality_score,
        }
    raise ValueError(f"format_type must be one of {', '.join(FORMAT_TYPES)}, got {format_type!r}")


def _messages(sample: Sample) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": sample.query},
        {"role": "assistant", "content": sample.response},
    ]


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
    messages = data["messages"]
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list")
    query: str | None = None
    response: str | None = None
    for message in messages:
        if not isinstance(message, dict):
            raise ValueError("each message must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, str) or not content.strip():
            continue
        if query is None and role == "user":
            query = content
        elif query is not None and role == "assistant":
            response = content
            break
    if query is None or response is None:
        raise ValueError("chat sample needs a user message followed by an assistant message")
    raw_meta = data.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    feedback = meta.get("user_feedback")
    return Sample(
        query,
        response,
        quality_score=_score(meta.get("quality_score")),
        user_feedback=feedback
        if feedback in (-1, 0, 1) and not isinstance(feedback, bool)
        else None,
        model=meta.get("model") if isinstance(meta.get("model"), str) else None,
        expert=meta.get("expert") if isinstance(meta.get("expert"), str) else None,
    )


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _score(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None
