"""KServe's payload logger: request and response CloudEvents become one record."""

from __future__ import annotations

import json
from typing import Any

import pytest

from afs.continuous.collector.app import KSERVE_REQUEST, KSERVE_RESPONSE
from tests.collector.conftest import AUTH, Serve
from tests.collector.test_streams import TEXT_STREAM, _sse

REQUEST_BODY = {"instances": ["What is the SNES CPU?"]}
RESPONSE_BODY = {"predictions": ["The 65C816."]}


def event_headers(kind: str, event_id: str, **extra: str) -> dict[str, str]:
    """Binary-mode CloudEvent headers as KServe's logger sends them."""
    return {
        "ce-specversion": "1.0",
        "ce-type": kind,
        "ce-source": "http://localhost:9081/",
        "ce-id": event_id,
        "ce-time": "2026-11-20T11:59:00.000Z" if kind == KSERVE_REQUEST
        else "2026-11-20T11:59:00.250Z",
        "ce-inferenceservicename": "nayru",
        "ce-namespace": "ml",
        "ce-component": "predictor",
        "Content-Type": "application/json",
        **AUTH,
        **extra,
    }  # fmt: skip


async def _post(client: Any, kind: str, event_id: str, body: Any, path: str = "/v1/kserve",
                **extra: str) -> Any:  # fmt: skip
    return await client.post(
        path, data=json.dumps(body), headers=event_headers(kind, event_id, **extra)
    )


@pytest.mark.parametrize("response_first", [False, True])
async def test_a_pair_in_either_order_is_one_record_with_the_event_id(
    serve: Serve, response_first: bool
) -> None:
    halves = [(KSERVE_REQUEST, REQUEST_BODY), (KSERVE_RESPONSE, RESPONSE_BODY)]
    if response_first:
        halves.reverse()
    async with serve() as (client, collector):
        first = await _post(client, halves[0][0], "ev-1", halves[0][1])
        assert first.status == 202 and (await first.json())["status"] == "waiting"
        second = await _post(client, halves[1][0], "ev-1", halves[1][1])
        assert second.status == 200 and (await second.json())["ids"] == ["ev-1"]
        record = collector.logger.store.get("ev-1")
    assert record is not None
    assert (record.query, record.response, record.model) == (
        "What is the SNES CPU?",
        "The 65C816.",
        "nayru",
    )
    assert record.latency_ms == pytest.approx(250.0)
    assert record.timestamp.startswith("2026-11-20T11:59:00")


async def test_the_logger_url_names_the_arm(serve: Serve) -> None:
    async with serve() as (client, collector):
        path = "/v1/kserve?model=nayru-run-3"
        await _post(client, KSERVE_REQUEST, "ev-2", REQUEST_BODY, path)
        await _post(client, KSERVE_RESPONSE, "ev-2", RESPONSE_BODY, path)
        record = collector.logger.store.get("ev-2")
    assert record is not None and record.model == "nayru-run-3"


async def test_a_resent_pair_is_stored_once(serve: Serve) -> None:
    async with serve() as (client, collector):
        for _ in range(2):
            await _post(client, KSERVE_REQUEST, "ev-3", REQUEST_BODY)
            await _post(client, KSERVE_RESPONSE, "ev-3", RESPONSE_BODY)
        again = await _post(client, KSERVE_RESPONSE, "ev-3", RESPONSE_BODY)
        assert (await again.json())["status"] == "duplicate"
        collector.join.forget("ev-3")  # the id is past the join's memory: the store knows it
        await _post(client, KSERVE_REQUEST, "ev-3", REQUEST_BODY)
        late = await _post(client, KSERVE_RESPONSE, "ev-3", RESPONSE_BODY)
        assert late.status == 200 and (await late.json())["status"] == "duplicate"
        assert len(list(collector.logger.get_records(limit=None))) == 1


async def test_a_half_never_completed_expires_uncounted_as_a_record(serve: Serve) -> None:
    async with serve(join_ttl_s=0.05) as (client, collector):
        await _post(client, KSERVE_REQUEST, "ev-4", REQUEST_BODY)
        import asyncio

        await asyncio.sleep(0.1)
        await _post(client, KSERVE_REQUEST, "ev-5", REQUEST_BODY)  # expiry runs on offers
        metrics = await (await client.get("/metrics")).text()
        assert "afs_collector_join_expired_total 1.0" in metrics
        assert list(collector.logger.get_records(limit=None)) == []


async def test_an_error_response_is_an_error_record(serve: Serve) -> None:
    async with serve() as (client, collector):
        await _post(client, KSERVE_REQUEST, "ev-6", REQUEST_BODY)
        await _post(client, KSERVE_RESPONSE, "ev-6", {"error": "model not loaded"})
        record = collector.logger.store.get("ev-6")
    assert record is not None and record.is_error and record.response == "model not loaded"


@pytest.mark.parametrize(
    ("change", "body", "message"),
    [
        ({"ce-type": "com.example.other"}, REQUEST_BODY, "ce-type must be"),
        ({"ce-id": ""}, REQUEST_BODY, "'id' must not be None or empty"),
        ({"ce-time": "yesterday"}, REQUEST_BODY, "not a CloudEvent"),
        ({"ce-specversion": "9.9"}, REQUEST_BODY, "not a CloudEvent"),
        ({}, {"rows": [1]}, "none of messages or prompt"),
        ({}, "not an object", "must be a JSON object"),
        ({"ce-inferenceservicename": ""}, REQUEST_BODY, "no model to record"),
    ],
)
async def test_an_event_we_cannot_read_is_refused_with_the_reason(
    serve: Serve, change: dict[str, str], body: Any, message: str
) -> None:
    async with serve() as (client, collector):
        headers = {**event_headers(KSERVE_REQUEST, "ev-7"), **change}
        answer = await client.post("/v1/kserve", data=json.dumps(body), headers=headers)
        assert answer.status == 400
        assert message in (await answer.json())["error"]
        assert len(collector.join) == 0


async def test_the_in_cluster_listener_takes_kserve_events_without_a_token(
    serve: Serve,
) -> None:
    async with serve(authenticate=False, kserve_only=True) as (client, _collector):
        headers = {k: v for k, v in event_headers(KSERVE_REQUEST, "ev-8").items()
                   if k != "Authorization"}  # fmt: skip
        answer = await client.post("/v1/kserve", data=json.dumps(REQUEST_BODY), headers=headers)
        assert answer.status == 202
        native = await client.post("/v1/usage", json={"query": "q", "response": "r", "model": "m"})
        assert native.status == 404  # only KServe's endpoint is open there


async def test_an_openai_chat_pair_with_a_streamed_answer_keeps_its_conversation(
    serve: Serve,
) -> None:
    """KServe's OpenAI endpoint streams SSE; the logger posts that text as the response
    body. It is assembled as the SDK assembles a stream, and the chat keeps its turns."""
    messages = [
        {"role": "system", "content": "You are nayru."},
        {"role": "user", "content": "What does SEP #$20 do?"},
    ]
    tools = [{"type": "function", "function": {"name": "lookup_opcode"}}]
    request = {"model": "nayru", "stream": True, "messages": messages, "tools": tools}
    async with serve() as (client, collector):
        await _post(client, KSERVE_REQUEST, "ev-sse", request)
        answer = await client.post(
            "/v1/kserve", data=_sse(TEXT_STREAM),
            headers=event_headers(KSERVE_RESPONSE, "ev-sse", **{
                "Content-Type": "text/event-stream"}),
        )  # fmt: skip
        assert answer.status == 200, await answer.text()
        record = collector.logger.store.get("ev-sse")
    assert record is not None
    assert (record.response, record.token_count) == ("It sets the M flag.", 5)
    assert (record.messages, record.tools) == (messages, tools)


def _structured(**envelope: Any) -> str:
    event = {"specversion": "1.0", "type": KSERVE_REQUEST, "source": "http://localhost:9081/",
             "id": "ev-structured-1", "datacontenttype": "application/json",
             "data": REQUEST_BODY} | envelope  # fmt: skip
    return json.dumps({k: v for k, v in event.items() if v is not None})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_structured(id=None), "id is required"),
        (_structured(specversion=None), "specversion is required"),
        (_structured().replace('"data": {', '"data": {"x": NaN, '), "NaN is not a JSON number"),
        (_structured().replace('"id": "ev-structured-1"',
                               '"id": "ev-structured-1", "id": "other"'), "duplicate key 'id'"),
        ('{"data": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested"),
        ("[1, 2]", "not a JSON object"),
    ],
    ids=["no-id", "no-specversion", "nan", "duplicate-key", "deep", "not-an-object"],
)  # fmt: skip
async def test_a_structured_event_is_read_as_strictly_as_a_binary_one(
    serve: Serve, body: str, message: str
) -> None:
    headers = AUTH | {"Content-Type": "application/cloudevents+json"}
    async with serve() as (client, _collector):
        answer = await client.post("/v1/kserve", data=body, headers=headers)
        assert answer.status == 400, await answer.text()
        assert message in (await answer.json())["error"]


async def test_a_well_formed_structured_event_is_taken(serve: Serve) -> None:
    headers = AUTH | {"Content-Type": "application/cloudevents+json"}
    async with serve() as (client, _collector):
        event = _structured(inferenceservicename="nayru")
        answer = await client.post("/v1/kserve", data=event, headers=headers)
        assert answer.status in (200, 202), await answer.text()
