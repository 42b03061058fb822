"""The collector over real HTTP: each endpoint, its guards, and what reaches the store."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from typing import Any

import pytest

from afs.continuous import UsageLogger, UsageRecord
from tests.chat_examples import MESSAGES, TOOLS
from tests.collector.conftest import AUTH, BROKEN_TRIGGER, Serve

NDJSON = {"Content-Type": "application/x-ndjson", **AUTH}


def _lines(*records: dict[str, Any]) -> str:
    return "\n".join(json.dumps(r) for r in records) + "\n"


def _stored(logger: UsageLogger) -> list[Any]:
    return list(logger.get_records(limit=None))


async def test_one_record_is_committed_before_the_answer(serve: Serve) -> None:
    async with serve() as (client, collector):
        answer = await client.post(
            "/v1/usage", json={"query": "q", "response": "r", "model": "m", "latency_ms": 12},
            headers=AUTH,
        )  # fmt: skip
        assert answer.status == 200
        (record_id,) = (await answer.json())["ids"]
        stored = collector.logger.store.get(record_id)
        assert stored is not None and stored.latency_ms == 12


async def test_a_record_with_its_conversation_is_stored_whole_through_the_writer(
    serve: Serve,
) -> None:
    """The conversation travels with the row to the writer process, which stores its
    nodes in the same transaction as the record."""
    messages = [
        {"role": "system", "content": "You are nayru."},
        {"role": "user", "content": "What does SEP #$20 do?"},
    ]
    tools = [{"type": "function", "function": {"name": "lookup_opcode"}}]
    async with serve() as (client, collector):
        answer = await client.post(
            "/v1/usage",
            json={"response": "8-bit accumulator", "model": "m", "messages": messages,
                  "tools": tools},
            headers=AUTH,
        )  # fmt: skip
        assert answer.status == 200, await answer.text()
        (record_id,) = (await answer.json())["ids"]
        stored = collector.logger.store.get(record_id)
        assert stored is not None and stored.query == "What does SEP #$20 do?"
        assert stored.messages == messages and stored.tools == tools


async def test_many_records_as_ndjson_are_all_committed(serve: Serve) -> None:
    rows = [{"query": f"q{i}", "response": "r", "model": "m"} for i in range(50)]
    async with serve() as (client, collector):
        answer = await client.post("/v1/usage", data=_lines(*rows) + "\n", headers=NDJSON)
        assert answer.status == 200
        assert len((await answer.json())["ids"]) == 50
        assert len(_stored(collector.logger)) == 50


async def test_one_bad_record_refuses_the_batch_naming_it(serve: Serve) -> None:
    rows: list[dict[str, Any]] = [{"query": "q", "response": "r", "model": "m"}] * 3
    rows[2] = {"query": "q", "response": "r", "model": "m", "quality_score": 7}
    async with serve() as (client, collector):
        # a blank line before the bad record: the line differs from the index
        body_text = _lines(*rows[:2]) + "\n" + _lines(rows[2])
        answer = await client.post("/v1/usage", data=body_text, headers=NDJSON)
        assert answer.status == 400
        body = await answer.json()
        assert body["index"] == 2 and body["field"] == "quality_score"
        assert body["line"] == 4  # the key the OpenAPI document promises
        broken = await client.post("/v1/usage", data=_lines(rows[0]) + "{oops\n", headers=NDJSON)
        assert (await broken.json())["line"] == 2
        assert "quality_score" in body["error"]
        assert _stored(collector.logger) == []


@pytest.mark.parametrize(
    ("data", "headers", "status", "message"),
    [
        ('{"query": "q", "response": "r", "model": "m", "colour": 1}', {}, 400,
         "colour"),
        ("[1, 2]", {}, 400, "one record as a JSON object"),
        ('{"query": "q",', {}, 400, "not valid JSON"),
        ('{"query": "q", "query": "p", "response": "r", "model": "m"}', {}, 400,
         "duplicate key"),
        ("query=q", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
         "Content-Type must be"),
        ("\n\n", {"Content-Type": "application/x-ndjson"}, 400, "holds no record"),
        ('{"query": "q", "response": "r", "model": "m"}\n5\n',
         {"Content-Type": "application/x-ndjson"}, 400, "line 2"),
    ],
)  # fmt: skip
async def test_malformed_bodies_get_a_specific_400(
    serve: Serve, data: str, headers: dict[str, str], status: int, message: str
) -> None:
    async with serve() as (client, collector):
        sent = {"Content-Type": "application/json", **AUTH, **headers}
        answer = await client.post("/v1/usage", data=data, headers=sent)
        assert answer.status == status
        assert message in (await answer.json())["error"]
        assert _stored(collector.logger) == []


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "a bearer token is required"),
        ({"Authorization": "Bearer wrong"}, "not valid"),
        ({"Authorization": "Basic czNjcmV0"}, "not valid"),
    ],
)
async def test_requests_without_the_token_are_refused(
    serve: Serve, headers: dict[str, str], message: str
) -> None:
    async with serve() as (client, collector):
        answer = await client.post(
            "/v1/usage", json={"query": "q", "response": "r", "model": "m"}, headers=headers
        )
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert message in (await answer.json())["error"]
        assert _stored(collector.logger) == []


async def test_metrics_count_the_writer_processes_started(serve: Serve) -> None:
    async with serve() as (client, collector):
        record = {"query": "q", "response": "r", "model": "m"}
        assert (await client.post("/v1/usage", json=record, headers=AUTH)).status == 200
        metrics = await (await client.get("/metrics")).text()
        assert "afs_collector_writer_starts 1.0" in metrics
        child = collector.writer._child  # type: ignore[attr-defined]
        child.kill()
        await child.wait()
        assert (await client.post("/v1/usage", json=record, headers=AUTH)).status == 200
        metrics = await (await client.get("/metrics")).text()
        assert "afs_collector_writer_starts 2.0" in metrics


async def test_every_endpoints_series_exists_before_its_first_record(serve: Serve) -> None:
    """A rate over a series that appears only with its first sample reads as missing,
    not zero, on a dashboard; each endpoint's counters start at 0."""
    async with serve() as (client, _):
        metrics = await (await client.get("/metrics")).text()
    for endpoint in ("usage", "feedback", "openai", "kserve"):
        assert f'afs_collector_records_received_total{{endpoint="{endpoint}"}} 0.0' in metrics
        assert f'afs_collector_records_stored_total{{endpoint="{endpoint}"}} 0.0' in metrics
        assert f'afs_collector_request_seconds_count{{endpoint="{endpoint}"}} 0.0' in metrics


async def test_probes_and_metrics_need_no_token(serve: Serve) -> None:
    async with serve() as (client, _):
        assert (await client.get("/healthz")).status == 200
        ready = await client.get("/readyz")
        assert ready.status == 200 and (await ready.json())["schema_version"] >= 1
        metrics = await client.get("/metrics")
        assert "afs_collector_records_received" in await metrics.text()


async def test_paths_no_route_serves_add_no_metric_series(serve: Serve) -> None:
    async with serve() as (client, _):
        for n in range(5):
            assert (await client.post(f"/v1/made-up-{n}", json={})).status == 401
            assert (await client.post(f"/v1/made-up-{n}", json={}, headers=AUTH)).status == 404
        metrics = await (await client.get("/metrics")).text()
    assert "made-up" not in metrics
    assert 'endpoint="other",reason="unauthorized"' in metrics


async def test_readyz_says_why_when_the_database_does_not_answer(serve: Serve) -> None:
    async with serve() as (client, collector):
        collector.logger.store.close()
        answer = await client.get("/readyz")
        assert answer.status == 503
        assert "the database is not reachable" in (await answer.json())["error"]


async def test_a_body_over_the_limit_gets_413_and_nothing_is_stored(serve: Serve) -> None:
    async with serve(max_body_bytes=1024) as (client, collector):
        big = {"query": "q" * 2000, "response": "r", "model": "m"}
        answer = await client.post("/v1/usage", json=big, headers=AUTH)
        assert answer.status == 413
        assert "larger than 1024 bytes" in (await answer.json())["error"]
        assert _stored(collector.logger) == []


async def test_too_many_records_in_one_request_get_413(serve: Serve) -> None:
    rows = [{"query": f"q{i}", "response": "r", "model": "m"} for i in range(6)]
    async with serve(max_records=5) as (client, collector):
        answer = await client.post("/v1/usage", data=_lines(*rows), headers=NDJSON)
        assert answer.status == 413
        assert "more than 5 records" in (await answer.json())["error"]
        assert _stored(collector.logger) == []


async def test_feedback_reaches_the_record_and_a_missing_one_is_reported(serve: Serve) -> None:
    async with serve() as (client, collector):
        record_id = collector.logger.log("q", "r", "m")
        one = await client.post(
            "/v1/feedback", json={"id": record_id, "feedback": 1, "text": "good"}, headers=AUTH
        )
        assert one.status == 200 and (await one.json()) == {"updated": 1, "missing": []}
        assert collector.logger.store.get(record_id).user_feedback == 1  # type: ignore[union-attr]
        missing = await client.post(
            "/v1/feedback", json={"id": "nope", "feedback": -1}, headers=AUTH
        )
        assert missing.status == 404
        many = await client.post(
            "/v1/feedback",
            data=_lines({"id": record_id, "feedback": -1}, {"id": "nope", "feedback": 1}),
            headers=NDJSON,
        )
        assert (await many.json()) == {"updated": 1, "missing": ["nope"]}


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"id": "x", "feedback": 2}, "feedback"),
        ({"id": "x"}, "feedback"),
        ({"feedback": 1}, "id"),
        ({"id": "x", "feedback": 1, "text": 5}, "text"),
        ({"id": "x", "feedback": 1, "score": 5}, "score"),
    ],
)
async def test_bad_feedback_is_refused_before_any_is_written(
    serve: Serve, item: dict[str, Any], field: str
) -> None:
    async with serve() as (client, collector):
        record_id = collector.logger.log("q", "r", "m")
        answer = await client.post(
            "/v1/feedback", data=_lines({"id": record_id, "feedback": 1}, item), headers=NDJSON
        )
        assert answer.status == 400
        body = await answer.json()
        assert body["field"] == field and body["index"] == 1
        assert collector.logger.store.get(record_id).user_feedback is None  # type: ignore[union-attr]


async def test_an_openai_pair_is_logged_under_the_arm_named(serve: Serve) -> None:
    pair = {
        "request": {"model": "nayru", "messages": [{"role": "user", "content": "Hi?"}]},
        "response": {"model": "nayru", "choices": [{"message": {"content": "Hello."}}],
                     "usage": {"completion_tokens": 2}},
        "latency_ms": 85.5,
    }  # fmt: skip
    record = await _logged_pair(serve, pair, "/v1/openai?model=nayru-run-3")
    assert (record.query, record.response, record.model) == ("Hi?", "Hello.", "nayru-run-3")
    assert (record.token_count, record.latency_ms) == (2, 85.5)


async def test_an_openai_chat_keeps_its_whole_conversation_and_tools(serve: Serve) -> None:
    messages, tools = MESSAGES, TOOLS
    pair = {
        "request": {"model": "gpt-4o-mini", "messages": messages, "tools": tools},
        "response": {"model": "gpt-4o-mini-2024-07-18",
                     "choices": [{"message": {"role": "assistant", "content": "8-bit A."}}]},
    }  # fmt: skip
    record = await _logged_pair(serve, pair, "/v1/openai")
    assert (record.messages, record.tools) == (messages, tools)
    assert record.query == "What does SEP #$20 do?" and record.response == "8-bit A."
    assert record.model == "gpt-4o-mini"  # the model asked for, not the dated snapshot
    assert record.latency_ms is None  # not sent: not known, not 0


@pytest.mark.parametrize("given", [None, "req-7"], ids=["ids-made", "id-given"])
async def test_each_choice_of_an_n_2_response_is_a_record_of_its_own(
    serve: Serve, given: str | None
) -> None:
    messages = [{"role": "user", "content": "Name a 65816 flag."}]
    pair: dict[str, Any] = {
        "request": {"model": "nayru", "n": 2, "messages": messages},
        "response": {"model": "nayru", "usage": {"completion_tokens": 9}, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "M"}},
            {"index": 1, "message": {"role": "assistant", "content": "X"}}]},
    }  # fmt: skip
    if given is not None:
        pair["id"] = given
    async with serve() as (client, collector):
        answer = await client.post("/v1/openai", json=pair, headers=AUTH)
        assert answer.status == 200, await answer.text()
        ids = (await answer.json())["ids"]
        records = [collector.logger.store.get(i) for i in ids]
    assert [r.response for r in records if r] == ["M", "X"]
    assert all(r is not None and r.messages == messages for r in records)
    assert all(r is not None and r.token_count is None for r in records)  # 9 covers both
    if given is not None:
        assert ids == ["req-7", "req-7-1"]


async def test_an_openai_tool_call_answer_is_kept_as_its_message(serve: Serve) -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup_opcode", "arguments": '{"opcode": "SEP"}'}}  # fmt: skip
    pair = {
        "request": {"model": "nayru", "messages": [{"role": "user", "content": "SEP?"}]},
        "response": {"model": "nayru", "choices": [{"finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [call],
            "annotations": []}}]},
    }  # fmt: skip
    record = await _logged_pair(serve, pair, "/v1/openai")
    assert record.response_message == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert record.response.startswith("[tool calls] lookup_opcode")


async def _logged_pair(serve: Serve, pair: dict[str, Any], path: str) -> UsageRecord:
    """Post an OpenAI-style pair; the record stored for it."""
    async with serve() as (client, collector):
        answer = await client.post(path, json=pair, headers=AUTH)
        assert answer.status == 200
        (record_id,) = (await answer.json())["ids"]
        record = collector.logger.store.get(record_id)
    assert record is not None
    return record


@pytest.mark.parametrize(
    ("extra", "key"),
    [({}, "user-7"), ({"assignment_key": "session-3"}, "session-3"),
     ({"safety_identifier": "hashed-9"}, "hashed-9")],
    ids=["the-request-s-user", "given", "safety-identifier-first"],
)  # fmt: skip
async def test_an_openai_pair_carries_its_assignment_key_hashed(
    serve: Serve, extra: dict[str, Any], key: str
) -> None:
    asked = {"model": "nayru", "user": "user-7", "messages": [{"role": "user", "content": "Hi?"}]}
    if "safety_identifier" in extra:  # a field of the request, not of the pair
        asked["safety_identifier"] = extra["safety_identifier"]
    pair = {
        "request": asked,
        "response": {"model": "nayru", "choices": [{"message": {"content": "Hello."}}]},
        **{k: v for k, v in extra.items() if k != "safety_identifier"},
    }  # fmt: skip
    record = await _logged_pair(serve, pair, "/v1/openai")
    assert record.assignment_hash == hashlib.sha256(key.encode()).hexdigest()[:32]


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ({"request": {"prompt": "x"}}, "response is required"),
        ({"request": {"prompt": "x"}, "response": {"choices": [{"text": "y"}]}, "extra": 1},
         "unknown field 'extra'"),
        ({"request": {"prompt": "x"}, "response": {"choices": [{"delta": {}}]}},
         "streamed chunk"),
        ({"request": {"prompt": "x"}, "response": {"choices": [{"text": "y"}]}},
         "model"),
    ],
)  # fmt: skip
async def test_a_bad_openai_pair_says_why(serve: Serve, pair: dict[str, Any], message: str) -> None:
    async with serve() as (client, collector):
        answer = await client.post("/v1/openai", json=pair, headers=AUTH)
        assert answer.status == 400
        assert message in (await answer.json())["error"]
        assert _stored(collector.logger) == []


async def test_async_writes_are_acknowledged_queued_and_flushed_on_shutdown(
    serve: Serve,
) -> None:
    rows = [{"query": f"q{i}", "response": "r", "model": "m"} for i in range(20)]
    async with serve() as (client, collector):
        answer = await client.post("/v1/usage?async=1", data=_lines(*rows), headers=NDJSON)
        assert answer.status == 202
        assert (await answer.json())["queued"] is True
        logger = collector.logger
    assert len(_stored(logger)) == 20  # the server's shutdown flushed the buffer


async def test_a_full_async_buffer_answers_503_with_retry_after(serve: Serve) -> None:
    rows = [{"query": f"q{i}", "response": "r", "model": "m"} for i in range(5)]
    async with serve(async_max_pending=4, retry_after_s=7) as (client, _collector):
        answer = await client.post("/v1/usage?async=1", data=_lines(*rows), headers=NDJSON)
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "7"
        assert "nothing was queued" in (await answer.json())["error"]


async def test_a_fault_of_ours_is_a_500_without_a_trace(serve: Serve) -> None:
    async with serve() as (client, collector):
        with sqlite3.connect(collector.logger.db_path) as conn:  # a failure no retry mends
            conn.execute(BROKEN_TRIGGER)
        answer = await client.post(
            "/v1/usage", json={"query": "q", "response": "r", "model": "m"}, headers=AUTH
        )
        assert answer.status == 500
        text = await answer.text()
        assert "Traceback" not in text and "boom" not in text


async def test_concurrent_posts_are_all_stored_once(serve: Serve) -> None:
    async with serve() as (client, collector):
        answers = await asyncio.gather(*(
            client.post("/v1/usage", json={"query": f"q{i}", "response": "r", "model": "m"},
                        headers=AUTH)
            for i in range(40)
        ))  # fmt: skip
        assert {a.status for a in answers} == {200}
        assert len(_stored(collector.logger)) == 40


async def test_feedback_may_carry_a_correction(serve: Serve) -> None:
    async with serve() as (client, collector):
        record_id = collector.logger.log("how do I set 16-bit mode?", "SEP #$20", "m")
        fix = {"id": record_id, "feedback": -1, "correction": "REP #$30"}
        answer = await client.post("/v1/feedback", json=fix, headers=AUTH)
        assert answer.status == 200
        stored = collector.logger.store.corrections([record_id])
        assert stored == {record_id: {"role": "assistant", "content": "REP #$30"}}
        bad = {"id": record_id, "feedback": -1, "correction": {"role": "user", "content": "x"}}
        refused = await client.post("/v1/feedback", json=bad, headers=AUTH)
        assert refused.status == 400
        assert (await refused.json())["field"] == "correction.role"
