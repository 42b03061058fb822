"""The collector on a real PostgreSQL: the same answers, and a server restart under load
that loses and doubles nothing it acknowledged."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from afs.continuous import UsageLogger
from afs.continuous.collector.app import KSERVE_REQUEST, KSERVE_RESPONSE
from afs.continuous.store import open_store
from tests.collector.conftest import AUTH, Serve
from tests.collector.test_kserve_events import REQUEST_BODY, RESPONSE_BODY, event_headers
from tests.postgres_server import fresh_schema, restart_server


@pytest.fixture
def pg_logger() -> Iterator[UsageLogger]:
    with fresh_schema() as url:
        logger = UsageLogger(url, store=open_store(url, retry_seconds=30))
        try:
            yield logger
        finally:
            logger.close()


async def test_native_and_kserve_records_reach_postgresql(
    serve: Serve, pg_logger: UsageLogger
) -> None:
    async with serve(logger=pg_logger) as (client, _):
        answer = await client.post(
            "/v1/usage", json={"query": "q", "response": "r", "model": "m"}, headers=AUTH
        )
        assert answer.status == 200
        for kind, body in ((KSERVE_REQUEST, REQUEST_BODY), (KSERVE_RESPONSE, RESPONSE_BODY)):
            await client.post(
                "/v1/kserve", data=json.dumps(body), headers=event_headers(kind, "pg-ev")
            )
    assert pg_logger.store.get("pg-ev") is not None
    assert pg_logger.get_statistics()["total"] == 2


async def test_feedback_and_openai_pairs_reach_postgresql(
    serve: Serve, pg_logger: UsageLogger
) -> None:
    pair = {
        "request": {"messages": [{"role": "user", "content": "Hi?"}]},
        "response": {"choices": [{"message": {"content": "Hello."}}]},
        "model": "nayru-run-3",
    }
    async with serve(logger=pg_logger) as (client, _):
        logged = await client.post("/v1/openai", json=pair, headers=AUTH)
        (record_id,) = (await logged.json())["ids"]
        rated = await client.post(
            "/v1/feedback", json={"id": record_id, "feedback": -1}, headers=AUTH
        )
        assert (await rated.json()) == {"updated": 1, "missing": []}
        queued = await client.post(
            "/v1/usage?async=1", json={"query": "q", "response": "r", "model": "m"}, headers=AUTH
        )
        assert queued.status == 202
    stored = pg_logger.store.get(record_id)
    assert stored is not None and stored.model == "nayru-run-3" and stored.user_feedback == -1
    assert pg_logger.get_statistics()["total"] == 2  # the queued one flushed at shutdown


@pytest.mark.slow
async def test_a_restart_under_load_loses_and_doubles_nothing_acknowledged(
    serve: Serve, pg_logger: UsageLogger
) -> None:
    acknowledged: list[str] = []
    refused = 0
    stop = asyncio.Event()

    async def client_loop(client: Any, worker: int) -> None:
        nonlocal refused
        sent = 0
        while not stop.is_set():
            rows = "".join(
                json.dumps({"query": f"w{worker}-{sent}-{i}", "response": "r", "model": "m"}) + "\n"
                for i in range(5)
            )
            sent += 1
            answer = await client.post(
                "/v1/usage", data=rows,
                headers={"Content-Type": "application/x-ndjson", **AUTH},
            )  # fmt: skip
            if answer.status == 200:
                acknowledged.extend((await answer.json())["ids"])
            else:
                assert answer.status == 503, await answer.text()
                refused += 1
                await asyncio.sleep(0.05)

    async with serve(logger=pg_logger) as (client, _):
        workers = [asyncio.create_task(client_loop(client, w)) for w in range(4)]
        await asyncio.sleep(0.5)
        before = len(acknowledged)
        await asyncio.to_thread(restart_server, stopped_for=1.0)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*workers)
    assert before > 0 and len(acknowledged) > before  # writes went on after the restart
    stored = list(pg_logger.get_records(limit=None))
    ids = Counter(r.id for r in stored)
    queries = Counter(r.query for r in stored)
    assert all(ids[i] == 1 for i in acknowledged)  # every acknowledged record, once
    assert max(queries.values()) == 1  # and nothing written twice


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/usage", {"id": "a\x00b", "query": "q", "response": "r", "model": "m"}),
        ("/v1/usage", {"id": "\ud800", "query": "q", "response": "r", "model": "m"}),
        ("/v1/usage", {"query": "q\x00", "response": "r", "model": "m"}),
        ("/v1/usage", {"query": "q", "response": "r", "model": "m", "quality_score": 10**400}),
        ("/v1/usage", {"query": "q", "response": "r", "model": "m",
                       "timestamp": "9999-12-31T23:00:00-05:00"}),
        ("/v1/feedback", {"id": "a\x00b", "feedback": 1}),
        ("/v1/feedback", {"id": "x", "feedback": 1, "text": "a\x00b"}),
        ("/v1/openai", {"id": "a\x00b", "request": {"messages": [{"role": "user", "content": "q"}]},
                        "response": {"choices": [{"message": {"role": "assistant",
                                                              "content": "a"}}]}}),
    ],
    ids=["id-nul", "id-surrogate", "query-nul", "huge-score", "year-10000", "feedback-id-nul",
         "feedback-text-nul", "openai-id-nul"],
)  # fmt: skip
async def test_hostile_values_are_a_400_on_postgresql_too(
    serve: Serve, pg_logger: UsageLogger, path: str, body: dict[str, Any]
) -> None:
    """PostgreSQL refuses NUL in text and lone surrogates outright: they must be caught
    before they reach it, not as a 500 from the writer."""
    async with serve(logger=pg_logger) as (client, _):
        answer = await client.post(
            path, data=json.dumps(body), headers=AUTH | {"Content-Type": "application/json"}
        )
        assert answer.status == 400, await answer.text()
        assert "field" in await answer.json()
    assert pg_logger.get_statistics()["total"] == 0
