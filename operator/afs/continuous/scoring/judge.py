"""An LLM judge behind any OpenAI-compatible chat-completions endpoint (vLLM, KServe's
OpenAI route, a hosted API): it reads a rubric, the question and the answer, and replies
with a score in [0, 1].

What a production judge needs: a per-call timeout, retries with exponential back-off on
timeouts, 429 and 5xx (other errors fail at once), a concurrency limit for batches, a
cache keyed by the record's content (the same question and answer are judged once), and
counters of calls, tokens and cost.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from afs.continuous.errors import ContinuousError, strip_credentials

DEFAULT_RUBRIC = (
    "You grade a model's answer to a user's question. Judge only whether the answer is "
    "correct, relevant and helpful for that question. Reply with a single number between "
    "0 and 1 (1: fully correct and helpful, 0: wrong, off-topic or a refusal) and nothing else."
)
_NUMBER = re.compile(r"(?<![\d.])(0(?:\.\d+)?|1(?:\.0+)?)(?![\d.])")
_RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}
CACHE_SIZE = 100_000


class JudgeError(ContinuousError, RuntimeError):
    """The judge could not score (after its retries), saying why."""


@dataclass
class JudgeUsage:
    calls: int = 0
    cached: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    """In the currency of ``price_per_1k_tokens``."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"cost": round(self.cost, 6)}


@dataclass(eq=False)  # compared (and hashed, as an ensemble's key) by identity
class JudgeScorer:
    """``JudgeScorer("http://vllm:8000/v1", model="judge")``; ``api_key`` is sent as a
    bearer token. ``price_per_1k_tokens`` prices the usage counter."""

    base_url: str
    model: str
    api_key: str | None = None
    rubric: str = DEFAULT_RUBRIC
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 4
    price_per_1k_tokens: float = 0.0
    usage: JudgeUsage = field(default_factory=JudgeUsage)
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge: {strip_credentials(self.base_url)} is not an http(s) URL")
        if self.concurrency < 1 or self.retries < 0 or self.timeout_s <= 0:
            raise ValueError("judge: concurrency >= 1, retries >= 0 and timeout_s > 0")
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, query: str, response: str) -> str:
        text = json.dumps([self.model, self.rubric, query, response])
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def score(self, query: str, response: str) -> float:
        key = self._key(query, response)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.usage.cached += 1
                return self._cache[key]
        value = self._ask(query, response)
        with self._lock:
            self._cache[key] = value
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return value

    def score_many(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Scores of many answers, at most ``concurrency`` calls at a time."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda pair: self.score(*pair), pairs))

    def _ask(self, query: str, response: str) -> float:
        body = json.dumps({
            "model": self.model,
            "temperature": 0,
            "max_tokens": 8,
            "messages": [
                {"role": "system", "content": self.rubric},
                {"role": "user", "content": f"Question:\n{query}\n\nAnswer:\n{response}"},
            ],
        }).encode()  # fmt: skip
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        why = ""
        for attempt in range(self.retries + 1):
            if attempt:
                with self._lock:
                    self.usage.retries += 1
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    data = json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                why = f"HTTP {exc.code}"
                if exc.code in _RETRYABLE:
                    continue
                raise JudgeError(f"judge at {strip_credentials(url)} refused: {why}") from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                why = f"no answer ({getattr(exc, 'reason', exc)})"
                continue
            except ValueError:
                why = "an answer that is not JSON"
                continue
            value = self._parse(data)
            if value is not None:
                return value
            why = "a reply with no score in [0, 1]"
        raise JudgeError(
            f"judge at {strip_credentials(url)}: {why} after {self.retries + 1} attempts"
        )

    def _parse(self, data: Any) -> float | None:
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict):
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            with self._lock:
                self.usage.prompt_tokens += prompt
                self.usage.completion_tokens += completion
                self.usage.cost += (prompt + completion) / 1000 * self.price_per_1k_tokens
        with self._lock:
            self.usage.calls += 1
        try:
            text = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
        found = _NUMBER.search(str(text))
        return None if found is None else float(found.group(1))
