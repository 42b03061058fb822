"""Clients that misbehave on the wire: one that leaves mid-body is counted and logged in a
line (no traceback, nothing written); one that drips its body is cut off with 408."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from afs.continuous.collector import Collector
from tests.collector.conftest import TOKEN, Serve

ENDPOINTS = ["/v1/usage", "/v1/feedback", "/v1/openai", "/v1/kserve"]


@asynccontextmanager
async def listening(collector: Collector) -> AsyncIterator[tuple[str, int]]:
    """The collector's app served as `afs-continuous collect` serves it (the test server
    cancels a handler whose client left; aiohttp's runner lets it read on and fail)."""
    runner = web.AppRunner(collector.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield host, port
    finally:
        await runner.cleanup()


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: collector\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_client_that_leaves_mid_body_is_one_line_and_nothing_is_written(
    serve: Serve, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.INFO, logger="afs.continuous.collector")
    async with serve() as (client, collector), listening(collector) as (host, port):
        _, writer = await asyncio.open_connection(host, port)
        writer.write(_head(path, 1000) + b'{"query": "q", "resp')
        await writer.drain()
        await asyncio.sleep(0.3)  # the handler is reading the body by now
        writer.close()
        for _ in range(100):  # the server notices the closed connection
            metrics = await (await client.get("/metrics")).text()
            if 'reason="client_gone"' in metrics:
                break
            await asyncio.sleep(0.05)
        endpoint = path.rsplit("/", 1)[1]
        assert f'endpoint="{endpoint}",reason="client_gone"}} 1.0' in metrics
        assert collector.logger.get_statistics()["total"] == 0
    lines = [r for r in caplog.records if "left before its body arrived" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info is not None]


async def test_a_body_dripped_slower_than_the_timeout_gets_408(serve: Serve) -> None:
    async with serve(body_timeout_s=0.5) as (client, collector), listening(collector) as where:
        reader, writer = await asyncio.open_connection(*where)
        writer.write(_head("/v1/usage", 1000))
        answer = b""
        try:
            for _ in range(40):  # a byte every 0.1 s: 4 s, were it not cut off
                writer.write(b" ")
                await writer.drain()
                try:
                    answer = await asyncio.wait_for(reader.read(4096), 0.1)
                except TimeoutError:
                    continue
                break
        finally:
            writer.close()
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line == b"HTTP/1.1 408 Request Timeout", answer
        assert b"did not arrive within 0.5 s" in answer
        metrics = await (await client.get("/metrics")).text()
        assert 'endpoint="usage",reason="body_timeout"} 1.0' in metrics
        assert collector.logger.get_statistics()["total"] == 0


async def test_a_body_sent_whole_in_time_is_stored(serve: Serve) -> None:
    body = b'{"query": "q", "response": "r", "model": "m"}'
    async with serve(body_timeout_s=0.5) as (_, collector), listening(collector) as where:
        reader, writer = await asyncio.open_connection(*where)
        writer.write(_head("/v1/usage", len(body)) + body)
        answer = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
        assert collector.logger.get_statistics()["total"] == 1
