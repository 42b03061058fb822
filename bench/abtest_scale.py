"""How long one replica takes to judge N running ABTests once.

The operator runs for real (kopf, the ``kubernetes`` client, the ABTest controller) against
kmock's Kubernetes emulator in a process of its own (as ``ForgetfulEmulator`` from
``operator_scale.py``: kmock's request log would otherwise set the pace) and a real
throwaway PostgreSQL (pgserver) holding 20,000 usage records of the two arms. Every test
is Running, its epoch counting, its analysis due, its HTTPRoute carrying the weights its
status says; the arms' records are alike, so every judgement computes every interval and
ends CONTINUE (no weight is written: a round of pure judgements). A round ends when every
test's status shows its analysis. Printed per N: the round's wall time and per judgement,
the operator process's CPU per judgement, the emulator's CPU for the round; the baseline,
measured in the same run against the same database, is one judgement done directly: the
arms' statistics query plus ``judge()``, no Kubernetes.

Target: a round of 1,000 in under 60 s.

Usage: python bench/abtest_scale.py [--sizes 10,100,1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import quote

import kmock
import psycopg
from operator_scale import (
    RESOURCES as LOOP_RESOURCES,
    ForgetfulEmulator,
    operator_round,
    prepare_emulator,
)

from afs.continuous import UsageLogger
from afs.continuous.ab_test import measure_epochs
from afs.continuous.core.decision import EpochWindow, judge
from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION, ABTestSpec
from afs.continuous.kube.rollout import decision_settings
from afs.continuous.timeutil import format_timestamp

RESOURCES = [
    *LOOP_RESOURCES,
    (f"{GROUP}/{VERSION}/abtests", "ABTest", True),
    ("gateway.networking.k8s.io/v1/httproutes", "HTTPRoute", True),
]
START = datetime.now(UTC) - timedelta(hours=6)
SPEC: dict[str, Any] = {
    "champion": {"modelVersion": "v1"},
    "challenger": {"modelVersion": "v2"},
    "traffic": {"provider": "gateway-api", "targetRef": {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "name": "route"}},
    "steps": [{"weight": 10}],
    "database": {"urlSecretRef": {"name": "usage-db", "key": "url"}},
    "decision": {"minRequestsPerArm": 100, "minFeedbackPerArm": 20, "minDurationHours": 0,
                 "maxDurationHours": 720},
}  # fmt: skip


def _database() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

        server = get_server(tempfile.mkdtemp(prefix="afs-abscale-pg-"), cleanup_mode="delete")
    base = str(server.get_uri())
    schema = f"abscale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{base}&options={quote(f'-csearch_path={schema}')}"
    rng = random.Random(1)
    with UsageLogger(url=url) as logger:
        for offset in range(0, 20_000, 5_000):
            logger.log_many(
                {"query": f"q{i}", "response": f"a{i}", "model": "v2" if i % 10 == 0 else "v1",
                 "quality_score": min(max(rng.gauss(0.7, 0.1), 0.0), 1.0),
                 "latency_ms": 100 + rng.random() * 50, "user_feedback": rng.choice([1, -1, 1]),
                 "timestamp": (START + timedelta(seconds=i)).isoformat()}
                for i in range(offset, offset + 5_000)
            )  # fmt: skip
    return url


def _abtest(index: int) -> dict[str, Any]:
    weights = {"champion": 90, "challenger": 10}
    spec = {**SPEC, "traffic": {**SPEC["traffic"], "targetRef": {
        **SPEC["traffic"]["targetRef"], "name": f"route-{index}"}}}  # fmt: skip
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ABTest",
        "metadata": {"name": f"test-{index}", "namespace": "ml", "uid": f"uid-{index}",
                     "resourceVersion": "1", "generation": 1},
        "spec": spec,
        "status": {"phase": "Running", "step": 0, "weights": weights,
                   "original": [{"rule": 0, "champion": 1, "challenger": 0}],
                   "started": format_timestamp(START),
                   "epochs": [{"step": 0, "weights": weights, "applied": format_timestamp(START),
                               "start": format_timestamp(START)}]},
    }  # fmt: skip


def _route(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": f"route-{index}", "namespace": "ml", "resourceVersion": "1"},
        "spec": {"rules": [{"backendRefs": [{"name": "v1", "weight": 90},
                                            {"name": "v2", "weight": 10}]}]},
    }  # fmt: skip


def _version(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": "ml", "resourceVersion": "1"},
        "spec": {"model": "m", "version": name, "uri": f"s3://{name}"},
        "status": {"stage": "Champion" if name == "v1" else "Challenger"},
    }


async def _serve_emulator(url: str, size: int, conn: Connection) -> None:
    async with ForgetfulEmulator() as emulator, kmock.Server(emulator):
        prepare_emulator(emulator, RESOURCES, url)
        for name in ("v1", "v2"):
            emulator.objects[f"{GROUP}/{VERSION}/modelversions", "ml", name] = _version(name)
        key = f"{GROUP}/{VERSION}/abtests"
        for index in range(size):
            emulator.objects[key, "ml", f"test-{index}"] = _abtest(index)
            emulator.objects["gateway.networking.k8s.io/v1/httproutes", "ml", f"route-{index}"] = (
                _route(index)
            )
        conn.send(str(emulator.url).rstrip("/"))
        cpu = time.process_time()
        while True:
            statuses = [
                emulator.objects[key, "ml", f"test-{index}"].get("status") or {}
                for index in range(size)
            ]
            if all(s.get("lastAnalysisTime") for s in statuses):
                verdicts = sorted({str(s.get("verdict")) for s in statuses})
                conn.send((time.process_time() - cpu, verdicts))
                break
            await asyncio.sleep(0.1)
        while not conn.poll():  # keep serving until the operator has stopped
            await asyncio.sleep(0.1)


def _emulator_process(url: str, size: int, conn: Connection) -> None:
    asyncio.run(_serve_emulator(url, size, conn))


async def round_of_judgements(url: str, size: int) -> tuple[float, float, float, list[str]]:
    """(wall s, operator CPU s, emulator CPU s, verdicts seen) for ``size`` tests judged
    once each (the emulator in a process of its own: the CPU figure is the operator's)."""
    wall, used, (emulator_cpu, verdicts) = await operator_round(_emulator_process, (url, size))
    return wall, used, float(emulator_cpu), list(verdicts)


def direct_judgement_ms(url: str) -> tuple[float, str]:
    """One judgement without Kubernetes: the arms' statistics for the epoch, then judge."""
    spec = ABTestSpec.model_validate(SPEC)
    settings = decision_settings(spec)
    with UsageLogger(url=url) as logger:

        def once() -> str:
            now = datetime.now(UTC)
            hours = (now - START).total_seconds() / 3600
            window = EpochWindow(start=START, end=now, hours=hours, challenger_share=0.1)
            epochs = measure_epochs(logger.store, [window], champion="v1", challenger="v2")
            return judge(epochs, settings, elapsed_hours=hours).kind.value

        once()
        started = time.perf_counter()
        for _ in range(50):
            verdict = once()
        return (time.perf_counter() - started) / 50 * 1000, verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size (best is kept)")
    args = parser.parse_args(argv)
    print("loading 20,000 usage records into a throwaway PostgreSQL …", file=sys.stderr)
    url = _database()
    print(
        f"{'tests':>6} | {'round s':>8} | {'ms/judgement':>12} | {'operator CPU ms/j':>17} | "
        f"{'emulator CPU s':>14} | baseline (same run)"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        best: tuple[float, float, float, list[str]] | None = None
        baselines = []
        for attempt in range(args.rounds):  # alternate: baseline, round, baseline, round …
            baselines.append(direct_judgement_ms(url))
            print(f"{size} tests, round {attempt + 1}/{args.rounds} …", file=sys.stderr)
            result = asyncio.run(round_of_judgements(url, size))
            if best is None or result[0] < best[0]:
                best = result
        assert best is not None
        wall, cpu, emulator_cpu, verdicts = best
        baseline, verdict = min(baselines)
        print(
            f"{size:>6} | {wall:>8.2f} | {wall / size * 1000:>12.1f} | "
            f"{cpu / size * 1000:>17.1f} | {emulator_cpu:>14.1f} | "
            f"one direct judgement: {baseline:.1f} ms ({verdict}); operator verdicts: "
            f"{', '.join(verdicts)}",
            flush=True,
        )
        if size >= 1000:
            mark = "✔" if wall < 60 else "✘"
            print(f"target: a round of 1,000 in under 60 s: {wall:.1f} s {mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
