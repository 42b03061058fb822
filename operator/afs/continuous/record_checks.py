"""The rules a record's fields must meet, and the derivations of a record that holds a
conversation or a response message. Split from :mod:`afs.continuous.records` (which
re-exports every name here): hand-written checks on the logging hot path, each raising
an :class:`~afs.continuous.errors.InvalidFieldError` that names the field and the value.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from afs.continuous import conversations
from afs.continuous.errors import InvalidFieldError

if TYPE_CHECKING:
    from afs.continuous.records import UsageRecord

#: Largest accepted query or response, in characters. Larger payloads are rejected, not cut.
MAX_TEXT_CHARS = 1_000_000
#: Largest accepted model or expert name.
MAX_NAME_CHARS = 256
#: Largest accepted free-text feedback.
MAX_FEEDBACK_TEXT_CHARS = 65_536
#: the longest latency a record may report: a day (sums of absurd ones overflow to inf)
MAX_LATENCY_MS = 86_400_000.0
#: the largest token_count (the PostgreSQL column is a 32-bit integer)
MAX_TOKEN_COUNT = 2**31 - 1

FEEDBACK_VALUES = (-1, 0, 1)


# --- validation --------------------------------------------------------------------


def check_text(field: str, value: Any, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise InvalidFieldError(field, value, "must be a string")
    if not value or value.isspace():
        raise InvalidFieldError(field, value, "must be a non-empty string")
    if len(value) > max_chars:
        raise InvalidFieldError(field, value, f"must be at most {max_chars} characters")
    _check_no_nul(field, value)
    if not value.isascii():
        _check_encodable(field, value)
    return value


def check_optional_text(field: str, value: Any, *, max_chars: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidFieldError(field, value, "must be a string or None")
    if len(value) > max_chars:
        raise InvalidFieldError(field, value, f"must be at most {max_chars} characters")
    _check_no_nul(field, value)
    if not value.isascii():
        _check_encodable(field, value)
    return value


def _check_no_nul(field: str, value: str) -> None:
    """PostgreSQL text cannot hold NUL; refused on every backend alike."""
    if "\x00" in value:
        raise InvalidFieldError(field, value, "must not contain NUL characters")


def _check_encodable(field: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidFieldError(field, value, "must be valid Unicode text") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    """A finite number (an integer too large for a float is not one)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_quality_score(value: Any, *, field: str = "quality_score") -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not _finite(value) or not 0.0 <= value <= 1.0:
        raise InvalidFieldError(field, value, "must be a finite number in [0, 1]")
    return float(value)


def check_latency_ms(value: Any) -> float:
    if not _is_number(value) or not _finite(value) or not 0 <= value <= MAX_LATENCY_MS:
        raise InvalidFieldError(
            "latency_ms", value, f"must be a finite number from 0 to {MAX_LATENCY_MS:.0f} (a day)"
        )
    return float(value)


def check_token_count(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidFieldError("token_count", value, "must be a non-negative integer or None")
    if value > MAX_TOKEN_COUNT:  # the column is a 32-bit integer in PostgreSQL
        raise InvalidFieldError("token_count", value, f"must be at most {MAX_TOKEN_COUNT}")
    return value


def check_feedback(value: Any, *, field: str = "feedback") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value not in FEEDBACK_VALUES:
        raise InvalidFieldError(field, value, "must be one of -1, 0, 1")
    return value


def check_limit(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidFieldError("limit", value, "must be a non-negative integer or None")
    return value


def check_record_id(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise InvalidFieldError("record_id", value, "must be a non-empty string")
    if not value.isascii():  # a lone surrogate cannot be stored (nor shown by the writer)
        _check_encodable("record_id", value)
    _check_no_nul("record_id", value)
    return value


# --- conversations and response messages ---------------------------------------


def take_response_message(r: UsageRecord) -> None:
    """Check a response given as an assistant message and keep it (``response_json``);
    ``response`` becomes its text, or for a message without text (tool calls, a refusal)
    a line that names what it does, so dedupe, scorers and statistics read something."""
    message = conversations.check_message(r.response_message, "response")
    if message.get("role") != "assistant":
        raise InvalidFieldError("response.role", message.get("role"), "must be assistant")
    text = conversations.text_of(message.get("content"))
    if not text and isinstance(message.get("refusal"), str):
        text = f"[refusal] {message['refusal']}"
    calls = message.get("tool_calls") or []
    if calls:
        named = ", ".join(
            f"{c['function']['name']}({c['function'].get('arguments', '')})" for c in calls
        )
        text = f"{text}\n[tool calls] {named}" if text else f"[tool calls] {named}"
    if not text:
        raise InvalidFieldError("response", message, "must hold content, a refusal or tool calls")
    r.response, r.response_message = text, message
    r.response_json = conversations.canonical(message)


def check_correction(value: Any) -> dict[str, Any]:
    """A corrected answer: its text, or an assistant message (tool calls, parts), as the
    assistant message it is stored as; InvalidFieldError naming what is wrong."""
    if isinstance(value, str):
        message: Any = {"role": "assistant", "content": check_text("correction", value)}
    else:
        message = value
    checked = conversations.check_message(message, "correction")
    if checked.get("role") != "assistant":
        raise InvalidFieldError("correction.role", checked.get("role"), "must be assistant")
    if not checked.get("content") and not checked.get("tool_calls"):
        raise InvalidFieldError("correction", value, "must hold content or tool calls")
    if len(conversations.canonical(checked)) > MAX_TEXT_CHARS:
        raise InvalidFieldError(
            "correction", "…", f"must be at most {MAX_TEXT_CHARS} characters as JSON"
        )
    return checked


def take_conversation(r: UsageRecord) -> None:
    """Check a record's conversation and derive from it what the record's columns hold:
    the query (the last user turn, when not given), ``context_hash`` (what came before
    it) and ``conversation_hash``."""
    if r.messages is None:
        raise InvalidFieldError("tools", r.tools, "need the messages they were offered in")
    messages = conversations.check_messages(r.messages)
    tools = conversations.check_tools(r.tools) if r.tools is not None else None
    derived = conversations.derive(messages, tools)
    if r.query is None or r.query == "":
        if not derived.query:
            raise InvalidFieldError(
                "query",
                r.query,
                "is required when the messages have no user turn with text",
            )
        r.query = derived.query
    r.messages, r.tools = messages, tools or None
    r.context_hash = derived.context_hash
    r.conversation_hash = derived.conversation_hash
