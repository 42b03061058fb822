"""The LLM judge against a local server that speaks the chat-completions API (the one
stand-in: no model can run here); everything else real — the HTTP calls, the retries,
the cache, the counters, ``afs-continuous score`` and the collector."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import UsageLogger
from afs.continuous.cli import main
from afs.continuous.scoring import scorer_from_spec
from afs.continuous.scoring.judge import JudgeError, JudgeScorer
from tests.collector.conftest import (
    AUTH,
    Serve,
    serve as serve,
)


class ChatServer:
    """``/v1/chat/completions``: "0.9" for an answer that says "right", "0.1" otherwise;
    ``script`` overrides the next replies (a status code, "garbage", or "slow")."""

    def __init__(self) -> None:
        self.calls = 0
        self.in_flight = self.most_in_flight = 0
        self.script: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.calls += 1
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                    step = server.script.pop(0) if server.script else None
                try:
                    time.sleep(0.05)
                    if isinstance(step, int):
                        self.send_response(step)
                        self.end_headers()
                        return
                    if step == "slow":
                        time.sleep(1.0)
                    answer = body["messages"][-1]["content"].split("Answer:")[-1]
                    content = "garbage" if step == "garbage" else (
                        "0.9" if "right" in answer else "0.1")  # fmt: skip
                    data = {"choices": [{"message": {"role": "assistant", "content": content}}],
                            "usage": {"prompt_tokens": 40, "completion_tokens": 2}}  # fmt: skip
                    payload = json.dumps(data).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.close()


def _judge(chat: ChatServer, **options: Any) -> JudgeScorer:
    return JudgeScorer(chat.url, model="judge", sleep=lambda s: None, **options)


def test_the_judge_scores_caches_and_counts(chat: ChatServer) -> None:
    judge = _judge(chat, api_key="k-123", price_per_1k_tokens=0.5)
    assert judge.score("What is XBA?", "the right answer") == 0.9
    assert judge.score("What is XBA?", "a wrong one") == 0.1
    assert judge.score("What is XBA?", "the right answer") == 0.9  # from the cache
    assert chat.calls == 2
    assert chat.headers[0]["Authorization"] == "Bearer k-123"
    assert judge.usage.to_dict() == {"calls": 2, "cached": 1, "retries": 0,
                                     "prompt_tokens": 80, "completion_tokens": 4,
                                     "cost": 0.042}  # fmt: skip


def test_transient_failures_are_retried_with_back_off(chat: ChatServer) -> None:
    waits: list[float] = []
    judge = JudgeScorer(chat.url, model="judge", sleep=waits.append, backoff_s=0.5)
    chat.script = [503, 429]
    assert judge.score("q", "right") == 0.9
    assert waits == [0.5, 1.0] and judge.usage.retries == 2


@pytest.mark.parametrize(
    ("script", "message", "calls"),
    [
        ([401], "refused: HTTP 401", 1),
        (["garbage"] * 4, r"a reply with no score in \[0, 1\] after 4 attempts", 4),
        (["slow"] * 4, "no answer", 4),
    ],
)
def test_a_judge_that_cannot_score_says_why(
    chat: ChatServer, script: list[Any], message: str, calls: int
) -> None:
    chat.script = list(script)
    judge = _judge(chat, timeout_s=0.3)
    with pytest.raises(JudgeError, match=message):
        judge.score("q", "an answer")
    assert chat.calls == calls


def test_a_batch_respects_the_concurrency_limit(chat: ChatServer) -> None:
    judge = _judge(chat, concurrency=2)
    scores = judge.score_many([(f"q{i}", "right" if i % 2 else "wrong") for i in range(8)])
    assert scores == [0.1, 0.9] * 4
    assert chat.most_in_flight <= 2 and chat.calls == 8


def test_score_scores_unscored_records_with_the_judge(
    chat: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("AFS_JUDGE_API_KEY", "secret-key")
    db = tmp_path / "u.db"
    with UsageLogger(db) as logger:
        right = logger.log("What is HDMA?", "the right answer", "m")
        wrong = logger.log("What is HDMA?", "off topic", "m")
    spec = f"judge:{chat.url}?model=judge&concurrency=2"
    assert main(["--db", str(db), "--json", "score", "--scorer", spec]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scored"] == 2 and report["usage"]["calls"] == 2
    assert "secret-key" not in json.dumps(report)
    assert chat.headers[0]["Authorization"] == "Bearer secret-key"
    with UsageLogger(db) as logger:
        scores = [logger.store.get(i).quality_score for i in (right, wrong)]  # type: ignore[union-attr]
    assert scores == [0.9, 0.1]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("judge:http://127.0.0.1:1/v1", "name the model"),
        ("judge:http://127.0.0.1:1/v1?model=j&temperature=1", "unknown: temperature"),
        ("judge:ftp://x/v1?model=j", r"is not an http\(s\) URL"),
        ("judge:http://127.0.0.1:1/v1?model=j&concurrency=many", "whole number"),
    ],
)
def test_a_bad_judge_spec_is_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scorer_from_spec(spec)


async def test_the_collector_scores_what_arrives_with_the_judge(
    chat: ChatServer, serve: Serve, tmp_path: Path
) -> None:
    logger = UsageLogger(tmp_path / "c.db", scorer=scorer_from_spec(f"judge:{chat.url}?model=j"))
    try:
        async with serve(logger=logger) as (client, collector):
            answer = await client.post(
                "/v1/usage", json={"query": "q", "response": "the right answer", "model": "m"},
                headers=AUTH,
            )  # fmt: skip
            assert answer.status == 200
            (record_id,) = (await answer.json())["ids"]
            record = collector.logger.store.get(record_id)
    finally:
        logger.close()
    assert record is not None and record.quality_score == 0.9


def test_an_ensemble_of_the_judge_and_the_heuristic_through_score(
    chat: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from afs.continuous.scoring import HeuristicScorer

    db = tmp_path / "u.db"
    with UsageLogger(db) as logger:
        record_id = logger.log("What is HDMA?", "the right answer", "m")
    spec = f"ensemble:judge:{chat.url}?model=j*3+heuristic*1"
    assert main(["--db", str(db), "score", "--scorer", spec]) == 0
    expected = (3 * 0.9 + HeuristicScorer().score("What is HDMA?", "the right answer")) / 4
    with UsageLogger(db) as logger:
        record = logger.store.get(record_id)
    assert record is not None and record.quality_score == pytest.approx(expected, abs=1e-3)


async def test_the_collector_scores_with_an_ensemble(
    chat: ChatServer, serve: Serve, tmp_path: Path
) -> None:
    scorer = scorer_from_spec(f"ensemble:judge:{chat.url}?model=j*1+heuristic*1")
    logger = UsageLogger(tmp_path / "c.db", scorer=scorer)
    try:
        async with serve(logger=logger) as (client, collector):
            answer = await client.post(
                "/v1/usage", json={"query": "q", "response": "a wrong answer", "model": "m"},
                headers=AUTH,
            )  # fmt: skip
            (record_id,) = (await answer.json())["ids"]
            record = collector.logger.store.get(record_id)
    finally:
        logger.close()
    assert record is not None and record.quality_score is not None
    assert 0.05 < record.quality_score < 0.9  # the judge's 0.1 averaged with the heuristic


@pytest.mark.parametrize(
    ("spec", "message"),
    [("ensemble:heuristic", "needs a weight"), ("ensemble:heuristic*x", "is not a weight"),
     ("ensemble:ensemble:heuristic*1*1", "cannot hold an ensemble")],
)  # fmt: skip
def test_a_bad_ensemble_spec_is_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scorer_from_spec(spec)
