"""KServe's payload logger: each inference is two CloudEvents (the request and the
response, sharing ``ce-id``), read here strictly from binary-mode headers or a structured
envelope; a joined pair becomes a record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloudevents.core.formats.json import JSONFormat

from afs.continuous.chat import conversation_fields
from afs.continuous.collector.join import Half, Kind, Pair
from afs.continuous.collector.payloads import (
    PayloadError,
    answer_of,
    assembled_response,
    question_of,
)
from afs.continuous.collector.refusals import (
    RequestRefusedError,
    parse_json_or_refuse,
    read_pair,
)
from afs.continuous.records import MAX_NAME_CHARS

KSERVE_REQUEST = "org.kubeflow.serving.inference.request"
KSERVE_RESPONSE = "org.kubeflow.serving.inference.response"


def kserve_half(headers: Mapping[str, str], raw: bytes) -> tuple[str, Half]:
    """The event's id and half, read by the CloudEvents SDK from binary-mode headers (as
    KServe sends them) or a structured event."""
    from cloudevents.core.bindings.http import HTTPMessage, from_http
    from cloudevents.core.exceptions import BaseCloudEventException

    names = {name.lower() for name in headers}
    if any(n.startswith("ce-") for n in names):  # binary mode
        for required in _REQUIRED_HEADERS:  # the SDK would make up an id and a version
            if required not in names:
                raise RequestRefusedError(
                    400, f"not a CloudEvent: the {required} header is required", reason="invalid"
                )
    else:  # structured mode: the envelope read as strictly as any body, and complete
        envelope = parse_json_or_refuse(raw, "the structured CloudEvent")
        if not isinstance(envelope, dict):
            raise RequestRefusedError(400, "not a CloudEvent: not a JSON object", reason="invalid")
        for required in ("specversion", "id", "source", "type"):
            if required not in envelope:  # the SDK would make up an id: never paired
                raise RequestRefusedError(
                    400, f"not a CloudEvent: {required} is required", reason="invalid"
                )
    try:
        event = from_http(HTTPMessage(dict(headers), raw), _RawData())
        kind, key, data = event.get_type(), event.get_id(), event.get_data()
        attributes = {
            name: str(value)
            for name in ("inferenceservicename", "namespace", "component", "endpoint")
            if (value := event.get_extension(name)) is not None
        }
        moment = event.get_time()
    except (BaseCloudEventException, ValueError, TypeError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RequestRefusedError(400, f"not a CloudEvent: {first}", reason="invalid") from exc
    if kind not in (KSERVE_REQUEST, KSERVE_RESPONSE):
        raise RequestRefusedError(
            400, f"ce-type must be {KSERVE_REQUEST} or {KSERVE_RESPONSE}, not {kind!r}",
            reason="unsupported",
        )  # fmt: skip
    if not isinstance(key, str) or not key or len(key) > MAX_NAME_CHARS:
        raise RequestRefusedError(
            400, f"ce-id must be 1 to {MAX_NAME_CHARS} characters", reason="invalid"
        )
    half_kind: Kind = "request" if kind == KSERVE_REQUEST else "response"
    # a structured event's data comes parsed with its envelope; a streamed OpenAI answer
    # comes as the SSE text the model server sent, assembled as the SDK assembles it
    if isinstance(data, bytes) and half_kind == "response" and _is_sse(data):
        try:
            body = assembled_response(data.decode("utf-8"))
        except (PayloadError, UnicodeDecodeError) as exc:
            raise RequestRefusedError(
                400, f"the response body (SSE): {exc}", reason="invalid"
            ) from exc
    elif isinstance(data, bytes):
        body = parse_json_or_refuse(data, f"the {half_kind} body")
    else:
        body = data
    try:  # read now: a body we cannot read is refused when it comes, not when paired
        question_of(body) if half_kind == "request" else answer_of(body)
    except PayloadError as exc:
        raise RequestRefusedError(400, str(exc), reason="invalid") from exc
    if moment is not None and moment.tzinfo is None:
        raise RequestRefusedError(400, "ce-time must carry a UTC offset", reason="invalid")
    return key, Half(half_kind, body, moment, attributes)


_REQUIRED_HEADERS = ("ce-specversion", "ce-id", "ce-source", "ce-type")


class _RawData(JSONFormat):
    """The JSON event format, but a binary-mode body is kept as bytes: the collector
    parses it strictly itself (duplicate keys, NaN, depth), and says what is wrong."""

    def read_data(self, body: bytes, datacontenttype: str | None) -> bytes:
        return body


def _is_sse(data: bytes) -> bool:
    return data.lstrip().startswith((b"data:", b"event:", b":", b"id:"))


def kserve_record(key: str, pair: Pair, query: Mapping[str, str]) -> dict[str, Any]:
    """The record of a request/response pair. Its model is ``?model=`` on the logger's
    URL, else the InferenceService's name. An OpenAI chat request keeps its whole
    conversation and tools, as on ``/v1/openai``."""
    question, answer = read_pair(pair.request.body, pair.response.body)
    model = query.get("model") or pair.request.attributes.get("inferenceservicename")
    record: dict[str, Any] = {
        "id": key, "query": question.query, "response": answer.message or answer.response,
        "model": model,
        "token_count": answer.token_count, "is_error": answer.is_error,
    }  # fmt: skip
    record.update(conversation_fields(pair.request.body, question))
    if query.get("expert"):
        record["expert"] = query["expert"]
    started, ended = pair.request.time, pair.response.time
    if started is not None:
        record["timestamp"] = started
        if ended is not None and ended >= started:
            record["latency_ms"] = (ended - started).total_seconds() * 1000
    return record
