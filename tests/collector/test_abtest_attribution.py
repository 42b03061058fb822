"""The issue's end to end: KServe's payload logger, through the collector, feeds the
ABTest controller, which tells the arms apart and promotes the better one.

The real operator (kopf, the ``kubernetes`` client) runs against the emulator with a
Serverless InferenceService whose logger points at the collector under the champion's
name. The test stands in for KServe: each arm's revision sends its request/response
CloudEvents to the logger URL of its own revision spec (the champion's as the user wrote
it, the challenger's as the operator rewrote it). A scorer stands in for the grader
(KServe's events carry no quality), and users' thumbs up name the events' ids.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import kmock
import pytest
from aiohttp.test_utils import TestClient, TestServer

from afs.continuous import UsageLogger
from afs.continuous.collector import Collector, CollectorSettings
from afs.continuous.collector.app import KSERVE_REQUEST, KSERVE_RESPONSE
from tests.conftest import FakeClock
from tests.kube.emulator import ApiServerEmulator
from tests.kube.test_abtest_providers import (
    PROVIDERS,
    Provider,
    _live,
    _start,
    register_providers,
)
from tests.kube.test_abtest_scenarios import _counting, _phase
from tests.kube.test_operator_scenarios import _call, _eventually, operator
from tests.postgres_server import fresh_schema

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(180)]

CHAMPION_LOGGER = "http://afs-collector.afs-system:8081/v1/kserve?model=nayru-v1"


class GraderStandIn:
    """Scores an answer by the grade the fixture wrote into it ("… [grade 0.812]")."""

    def score(self, query: str, response: str) -> float:
        return float(response.rsplit("[grade ", 1)[1].rstrip("]"))


def _logged_inference_service(provider: Provider) -> dict[str, Any]:
    obj = provider.make()
    obj["spec"]["predictor"]["logger"] = {"mode": "all", "url": CHAMPION_LOGGER}
    return obj


async def _send_events(
    client: TestClient[Any, Any], logger_url: str, arm: str, *, quality: float, start: datetime,
    count: int = 200,
) -> list[str]:  # fmt: skip
    """What one revision's KServe agent sends: a request and a response event per call."""
    target = urlsplit(logger_url)
    path = f"{target.path}?{target.query}"
    rng = random.Random(7)  # the same noise for both arms: only the means differ
    ids = []
    for i in range(count):
        at = start + timedelta(hours=2 * (i + 0.5) / count)
        grade = min(max(quality + rng.gauss(0, 0.05), 0.0), 1.0)
        event_id = f"{arm}-{i:04d}"
        for kind, body, moment in (
            (KSERVE_REQUEST, {"instances": [f"question {i}"]}, at),
            (KSERVE_RESPONSE, {"predictions": [f"answer {i} [grade {grade:.3f}]"]},
             at + timedelta(milliseconds=120)),
        ):  # fmt: skip
            headers = {
                "ce-specversion": "1.0", "ce-type": kind, "ce-source": "http://localhost:9081/",
                "ce-id": event_id, "ce-time": moment.isoformat(),
                "ce-inferenceservicename": "nayru", "ce-namespace": "default",
                "Content-Type": "application/json",
            }  # fmt: skip
            answer = await client.post(path, data=json.dumps(body), headers=headers)
            assert answer.status in (200, 202), await answer.text()
        ids.append(event_id)
    return ids


async def test_kserve_events_through_the_collector_are_judged_per_arm(
    kmock: kmock.KubernetesEmulator, clock: FakeClock
) -> None:
    (serverless,) = [p for p in PROVIDERS if p.id == "kserve-serverless"]
    register_providers(kmock)
    provider = Provider(
        **{**serverless.__dict__, "make": lambda: _logged_inference_service(serverless)}
    )
    with fresh_schema() as url:
        usage = UsageLogger(url=url, scorer=GraderStandIn())
        collector = Collector(usage, CollectorSettings(token=None))
        try:
            async with (
                operator(kmock, clock=clock) as kube,
                TestClient(
                    TestServer(collector.app(authenticate=False, kserve_only=True))
                ) as kserve_listener,
            ):
                await _start(kube, url, provider)
                start = await _counting(kube)
                live = await _call(_live, kube, provider)
                challenger_logger = live["spec"]["predictor"]["logger"]["url"]
                assert urlsplit(challenger_logger).query == "model=nayru-v2"
                sent = await _send_events(
                    kserve_listener, CHAMPION_LOGGER, "v1", quality=0.6, start=start
                ) + await _send_events(
                    kserve_listener, challenger_logger, "v2", quality=0.8, start=start
                )
                assert all(usage.record_feedback(event_id, 1) for event_id in sent)
                assert usage.store.model_counts() == {"nayru-v1": 200, "nayru-v2": 200}
                clock.advance(hours=3)
                status = await _eventually(_phase(kube, "Promoted"))
                assert status["verdict"] == "PROMOTE"
        finally:
            collector.close()
            usage.close()
