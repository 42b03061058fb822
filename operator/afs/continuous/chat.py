"""An OpenAI chat request and its response as usage records: one mapping for every way
they arrive — :meth:`UsageLogger.log_chat` in an application, the collector's
``/v1/openai`` behind a gateway. Pure: no I/O.

The request may be a dict or the SDK's params (``TypedDict``s are dicts); the response a
dict, the SDK's ``ChatCompletion``, or a stream (its chunks, or its SSE text), assembled
as the SDK assembles one. A chat keeps its whole conversation and the tools offered; each
choice (``n > 1``) is a record of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from afs.continuous.collector.payloads import (
    Question,
    answer_of,
    assembled_response,
    choice_answers,
    question_of,
)

#: what a caller may add to the pair (the collector's wrapper keys besides the two bodies)
EXTRA_KEYS = ("latency_ms", "id", "timestamp", "expert", "assignment_key")


def plain(value: Any) -> Any:
    """A dict for what the SDK returns (pydantic models); anything else as it is."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def conversation_fields(request: Any, question: Question) -> dict[str, Any]:
    """What a record keeps of the request beside its query: a chat's whole conversation
    and the tools offered; another protocol's context, hashed."""
    if isinstance(request, dict) and isinstance(request.get("messages"), list):
        fields: dict[str, Any] = {"messages": request["messages"]}
        if request.get("tools") is not None:
            fields["tools"] = request["tools"]
        return fields
    return {"context": question.context}


def chat_records(
    request: Any,
    response: Any,
    *,
    model: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The records of one request and its response (a :class:`PayloadError` saying what
    is wrong with either). ``model`` names the arm, else the request's model, else the
    response's (a dated snapshot would split an arm); ``extra`` holds any of
    :data:`EXTRA_KEYS`. The assignment key is ``extra``'s, else the request's
    ``safety_identifier``, else its ``user`` (OpenAI's end-user ids)."""
    request, response = plain(request), assembled_response(plain(response))
    question, answer = question_of(request), answer_of(response)
    record: dict[str, Any] = {
        "query": question.query, "response": answer.message or answer.response,
        "model": model or question.model or answer.model,
        "token_count": answer.token_count, "is_error": answer.is_error,
    }  # fmt: skip
    record.update(conversation_fields(request, question))
    given_extra = extra or {}
    record.update({k: given_extra[k] for k in EXTRA_KEYS if given_extra.get(k) is not None})
    record.setdefault("latency_ms", None)  # not sent: not known, never 0
    user = request.get("safety_identifier") or request.get("user")
    if "assignment_key" not in record and isinstance(user, str) and user:
        record["assignment_key"] = user
    choices = response.get("choices") if isinstance(response, dict) else None
    if not isinstance(choices, list) or len(choices) < 2:
        return [record]
    given = record.get("id")  # n > 1: the first choice keeps a given id, the others suffix it
    return [
        {**record, "response": each.message or each.response, "token_count": None,
         **({"id": f"{given}-{i}" if i else given} if given else {})}
        for i, each in enumerate(choice_answers(response, answer.model))
    ]  # fmt: skip
