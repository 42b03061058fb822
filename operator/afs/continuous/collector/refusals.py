"""How the collector refuses a request: an exception carrying the answer's status,
message and details (the middleware turns it into JSON), and the readers of bodies that
raise it, shared by the native, OpenAI and KServe endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from afs.continuous.collector.payloads import (
    Answer,
    PayloadError,
    Question,
    answer_of,
    parse_json,
    question_of,
)


class ClientGoneError(Exception):
    """The client closed its connection before its body arrived: nobody to answer."""


class RequestRefusedError(Exception):
    """A request answered with a 4xx or 5xx and a message (``reason`` for the metrics)."""

    def __init__(
        self, status: int, message: str, *, reason: str, headers: Mapping[str, str] | None = None,
        **details: Any,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason
        self.headers = dict(headers or {})
        self.details = details


def parse_json_or_refuse(raw: bytes, what: str) -> Any:
    try:
        return parse_json(raw, what=what)
    except PayloadError as exc:
        raise RequestRefusedError(400, str(exc), reason="invalid") from exc


def read_pair(request_body: Any, response_body: Any) -> tuple[Question, Answer]:
    try:
        return question_of(request_body), answer_of(response_body)
    except PayloadError as exc:
        raise RequestRefusedError(400, str(exc), reason="invalid") from exc
