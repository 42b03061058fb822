"""1,200 malformed requests, seeded: each is refused with a 4xx that says what is wrong,
none is a 500, and nothing of any of them is stored."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from afs.continuous.collector.app import KSERVE_REQUEST
from tests.collector.conftest import AUTH, Serve
from tests.collector.test_kserve_events import REQUEST_BODY, event_headers

JSON = {"Content-Type": "application/json", **AUTH}
NDJSON = {"Content-Type": "application/x-ndjson", **AUTH}
RECORD = {"query": "q", "response": "r", "model": "m"}

Case = tuple[str, dict[str, str], bytes]

BAD_VALUES: list[tuple[str, Any]] = [
    ("query", ""), ("query", 5), ("query", None), ("query", "a\x00b"), ("query", ["q"]),
    ("response", " "), ("response", {"t": 1}), ("model", ""), ("model", "m" * 300),
    ("model", 3.5), ("expert", 7), ("latency_ms", -1), ("latency_ms", "fast"),
    ("latency_ms", 1e12), ("quality_score", 1.5), ("quality_score", "good"),
    ("token_count", -3), ("token_count", 2**40), ("token_count", 1.5),
    ("user_feedback", 2), ("user_feedback", "up"), ("is_error", "yes"), ("is_error", 1.5),
    ("timestamp", "yesterday"), ("timestamp", "2999-01-01T00:00:00Z"), ("timestamp", 12),
    ("id", ""), ("id", 5), ("id", "x" * 300), ("colour", "red"), ("", 1), ("id ", "x"),
    ("feedback_text", 5), ("feedback_text", ["x"]),
]  # fmt: skip


def _usage(rng: random.Random) -> Case:
    kind = rng.randrange(8)
    if kind <= 2:  # one bad field, as JSON or as the nth line of NDJSON
        field, value = rng.choice(BAD_VALUES)
        record = {**RECORD, field: value}
        if field in ("query", "response", "model") and rng.random() < 0.3:
            del record[field]
        text = json.dumps(record)
        if kind == 0:
            return "/v1/usage", JSON, text.encode()
        lines = [json.dumps(RECORD)] * rng.randrange(0, 4) + [text]
        return "/v1/usage", NDJSON, "\n".join(lines).encode()
    if kind == 3:  # broken JSON
        good = json.dumps(RECORD)
        return "/v1/usage", JSON, good[: rng.randrange(1, len(good) - 1)].encode()
    if kind == 4:  # not UTF-8, NaN, duplicate keys
        return "/v1/usage", JSON, rng.choice([
            b'{"query": "\xff\xfe", "response": "r", "model": "m"}',
            b'{"query": "q", "response": "r", "model": "m", "latency_ms": NaN}',
            b'{"query": "q", "response": "r", "model": "m", "model": "n"}',
        ])  # fmt: skip
    if kind == 5:  # deep or not an object
        depth = rng.choice([70, 1000, 50_000])
        return "/v1/usage", JSON, rng.choice([b"[" * depth + b"]" * depth, b"5", b'"x"', b""])
    if kind == 6:  # a content type we do not read
        ctype = rng.choice(["text/plain", "application/xml", "multipart/form-data"])
        return "/v1/usage", {**AUTH, "Content-Type": ctype}, json.dumps(RECORD).encode()
    return "/v1/usage", NDJSON, rng.choice([b"\n\n", b"[1]\n", b"null\n"])


def _feedback(rng: random.Random) -> Case:
    item: dict[str, Any] = {"id": "r1", "feedback": 1}
    field, value = rng.choice([
        ("feedback", 5), ("feedback", "up"), ("feedback", None), ("id", ""), ("id", 3),
        ("text", 4), ("rating", 1), ("id", None),
    ])  # fmt: skip
    item[field] = value
    if value is None:
        del item[field]
    return "/v1/feedback", JSON, json.dumps(item).encode()


def _openai(rng: random.Random) -> Case:
    pair: dict[str, Any] = {
        "request": {"messages": [{"role": "user", "content": "hi"}]},
        "response": {"choices": [{"message": {"content": "hello"}}]},
        "model": "m",
    }
    change = rng.randrange(7)
    if change == 0:
        del pair[rng.choice(["request", "response"])]
    elif change == 1:
        pair["request"] = rng.choice([{}, {"messages": []}, {"messages": "hi"}, []])
    elif change == 2:
        pair["response"] = rng.choice([{}, {"choices": []}, {"choices": [{"delta": {}}]}])
    elif change == 3:
        pair[rng.choice(["trace", "user", "Model"])] = 1
    elif change == 4:
        pair["latency_ms"] = rng.choice([-5, "slow", 1e15])
    elif change == 5:
        pair["model"] = rng.choice(["", "m" * 300])
        if pair["model"] == "":
            del pair["model"]  # then no model at all: refused too
    else:
        pair["request"]["messages"] = [{"role": "system", "content": "only"}]
    return "/v1/openai", JSON, json.dumps(pair).encode()


def _kserve(rng: random.Random) -> Case:
    headers = event_headers(KSERVE_REQUEST, f"fz-{rng.randrange(10**9)}")
    body: Any = REQUEST_BODY
    change = rng.randrange(6)
    if change == 0:
        del headers[rng.choice(["ce-type", "ce-id", "ce-source", "ce-specversion"])]
    elif change == 1:
        headers["ce-type"] = rng.choice(["org.kubeflow.serving.other", "x", ""])
    elif change == 2:
        headers["ce-time"] = rng.choice(["noon", "2026-13-40T99:00:00Z", "1"])
    elif change == 3:
        headers["ce-specversion"] = rng.choice(["0.1", "2.0", ""])
    elif change == 4:
        body = rng.choice([{}, {"instances": []}, [1], {"inputs": [{}]}, "text"])
    else:
        headers["ce-id"] = "i" * 300
    return "/v1/kserve", headers, json.dumps(body).encode()


MAKERS: list[Callable[[random.Random], Case]] = [_usage, _usage, _feedback, _openai, _kserve]


async def test_malformed_requests_get_a_specific_4xx_and_store_nothing(serve: Serve) -> None:
    rng = random.Random(20261201)
    statuses: Counter[int] = Counter()
    async with serve() as (client, collector):
        for _ in range(1200):
            path, headers, body = rng.choice(MAKERS)(rng)
            answer = await client.post(path, data=body, headers=headers)
            text = await answer.text()
            assert 400 <= answer.status < 500, (path, headers, body[:200], text)
            message = json.loads(text)["error"]
            assert len(message) > 10 and "Traceback" not in text, (path, body[:200], message)
            statuses[answer.status] += 1
        assert list(collector.logger.get_records(limit=None)) == []
        assert len(collector.join) == 0
    assert sum(statuses.values()) == 1200
    assert set(statuses) <= {400, 404, 413, 415}
