"""How long one round of checks takes for N LearningLoops, all due at once.

The real operator (kopf, the kubernetes client, the trigger core) against kmock's
Kubernetes emulator (in its own process, forgetting each request once served: see
ForgetfulEmulator; ``--record-requests`` runs it as it is) and a real throwaway
PostgreSQL (pgserver) holding 20,000 usage records of the watched model. Every loop is
due at once; a round ends when every loop's status shows its check. Triggers are set so
none fires (a round of pure checks). Prints, per N: the wall-clock time of the round and
per check, the operator process's CPU per check, and the emulator process's CPU for the
round (when it is close to the wall time, the emulator, not the operator, set the pace);
the baseline is one check run directly (no Kubernetes, no kopf) against the same
database in the same run.

Target: 1,000 loops checked in under 60 s on one replica.

Usage: python bench/operator_scale.py [--sizes 10,100,1000] [--record-requests]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import quote

import kmock
import kopf
import psycopg

from afs.continuous import RetrainTrigger, TriggerConfig, UsageLogger
from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION
from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.controllers import OperatorConfig, make_registry

RESOURCES = [
    ("v1/namespaces", "Namespace", False),
    ("v1/events", "Event", True),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False),
    (f"{GROUP}/{VERSION}/learningloops", "LearningLoop", True),
    (f"{GROUP}/{VERSION}/modelversions", "ModelVersion", True),
    ("batch/v1/jobs", "Job", True),
    ("v1/serviceaccounts", "ServiceAccount", True),
    ("v1/pods", "Pod", True),
    ("v1/secrets", "Secret", True),
]
NEVER = {"minNewSamples": 10**9, "enableScheduled": False, "enableQualityDrop": False}


def _database() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

        server = get_server(tempfile.mkdtemp(prefix="afs-scale-pg-"), cleanup_mode="delete")
    base = str(server.get_uri())
    schema = f"scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{base}&options={quote(f'-csearch_path={schema}')}"
    with UsageLogger(url=url) as logger:
        for offset in range(0, 20_000, 5_000):
            logger.log_many(
                {"query": f"q{i}", "response": f"a{i}", "model": "nayru-v1",
                 "quality_score": 0.5 + (i % 50) / 100, "user_feedback": 1 if i % 3 else None}
                for i in range(offset, offset + 5_000)
            )  # fmt: skip
    return url


def _loop(index: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LearningLoop",
        "metadata": {
            "name": f"loop-{index}", "namespace": "ml", "uid": f"uid-{index}",
            "resourceVersion": "1", "generation": 1,
        },
        "spec": {
            "model": {"name": "nayru-v1"},
            "database": {"urlSecretRef": {"name": "usage-db", "key": "url"}},
            "triggers": NEVER,
            "training": {"template": {"spec": {"containers": [{"name": "t", "image": "t"}]}}},
            "checkInterval": "1h",
        },
    }  # fmt: skip


class ForgetfulEmulator(kmock.KubernetesEmulator):
    """kmock's emulator, forgetting each request once it is served.

    kmock records every request for a test's assertions, and matches each new request
    against its reactions by walking that record, so its cost per request grows with the
    length of the run (a 1,000-loop round spent 472 of its 473 s in the emulator). A real
    API server keeps no such record; this benchmark asserts nothing on requests.
    """

    async def _handle(self, request: Any) -> Any:
        try:
            return await super()._handle(request)
        finally:
            for index, seen in enumerate(self._requests):
                if seen is request:
                    del self._requests[index]
                    break


def prepare_emulator(
    emulator: kmock.KubernetesEmulator, resources: list[tuple[str, str, bool]], url: str
) -> None:
    """Register ``resources`` and store the usage database's Secret (``ml/usage-db``)."""
    for resource, kind, namespaced in resources:
        info = emulator.resources[resource]
        info.kind, info.namespaced = kind, namespaced
        info.verbs = {"list", "watch", "get", "create", "patch", "update", "delete"}
        if resource.startswith(GROUP):
            info.subresources = {"status"}
    emulator.objects["v1/secrets", "ml", "usage-db"] = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "usage-db", "namespace": "ml"},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }  # fmt: skip


async def _serve_emulator(url: str, size: int, conn: Connection, *, forgetful: bool) -> None:
    """The emulator's side: serve, then report when every loop's status shows its check."""
    emulator_class = ForgetfulEmulator if forgetful else kmock.KubernetesEmulator
    async with emulator_class() as emulator, kmock.Server(emulator):
        prepare_emulator(emulator, RESOURCES, url)
        key = f"{GROUP}/{VERSION}/learningloops"
        for index in range(size):
            emulator.objects[key, "ml", f"loop-{index}"] = _loop(index)
        conn.send(str(emulator.url).rstrip("/"))
        cpu = time.process_time()
        while True:
            checked = sum(
                1
                for index in range(size)
                if (emulator.objects[key, "ml", f"loop-{index}"].get("status") or {}).get(
                    "lastCheckTime"
                )
            )
            if checked == size:
                conn.send(time.process_time() - cpu)  # the emulator's CPU for the round
                break
            await asyncio.sleep(0.1)
        while not conn.poll():  # keep serving until the operator has stopped
            await asyncio.sleep(0.1)


def _emulator_process(url: str, size: int, forgetful: bool, conn: Connection) -> None:
    asyncio.run(_serve_emulator(url, size, conn, forgetful=forgetful))


async def round_of_checks(url: str, size: int, *, forgetful: bool) -> tuple[float, float, float]:
    """(wall s, operator CPU s, emulator CPU s) for ``size`` loops to be checked once.

    The emulator runs in its own process so that the CPU figure is the operator's alone.
    """
    wall, used, message = await operator_round(_emulator_process, (url, size, forgetful))
    return wall, used, float(message)


async def operator_round(
    target: Callable[..., None], args: tuple[Any, ...]
) -> tuple[float, float, Any]:
    """Start ``target(*args, conn)`` (an emulator) in a process of its own, run the operator
    against the URL it sends until it sends the round's result; (wall s, operator CPU s,
    that result)."""
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=target, args=(*args, theirs), daemon=True
    )
    child.start()
    server = await asyncio.to_thread(ours.recv)
    registry = make_registry(OperatorConfig(poll_seconds=1.0), KubeClient.connect(server))

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server, insecure=True)

    @kopf.on.startup(registry=registry)
    def quiet(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False
        settings.execution.max_workers = 16

    ready, stop = asyncio.Event(), asyncio.Event()
    cpu, start = time.process_time(), time.perf_counter()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry, standalone=True, clusterwide=True,
            ready_flag=ready, stop_flag=stop,
        )
    )  # fmt: skip
    message = await asyncio.wait_for(asyncio.to_thread(ours.recv), 1800)
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    stop.set()
    try:  # a slow shutdown (kopf closing a thousand timers) must not lose the figures
        await asyncio.wait_for(task, 120)
    except (TimeoutError, asyncio.CancelledError):
        print("the operator did not stop within 120 s; cancelled", file=sys.stderr)
    finally:
        ours.send("stop")
        child.join(30)
    return wall, used, message


def direct_check_ms(url: str) -> float:
    with UsageLogger(url=url) as logger:
        trigger = RetrainTrigger(
            logger, TriggerConfig(min_new_samples=10**9, enable_scheduled=False,
                                  enable_quality_drop=False), state_key="bench-direct",
        )  # fmt: skip
        trigger.check_triggers()
        start = time.perf_counter()
        for _ in range(50):
            trigger.check_triggers()
        return (time.perf_counter() - start) / 50 * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument(
        "--record-requests", action="store_true",
        help="run kmock's emulator as it is, recording every request (slow: its cost per "
        "request grows with the run)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    print("loading 20,000 usage records into a throwaway PostgreSQL …", file=sys.stderr)
    url = _database()
    baseline = direct_check_ms(url)
    print(
        f"{'loops':>6} | {'round s':>8} | {'ms/check':>8} | {'operator CPU ms/check':>21} | "
        f"{'emulator CPU s':>14} | baseline"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"{size} loops …", file=sys.stderr)
        wall, cpu, emulator_cpu = asyncio.run(
            round_of_checks(url, size, forgetful=not args.record_requests)
        )
        print(
            f"{size:>6} | {wall:>8.2f} | {wall / size * 1000:>8.1f} | {cpu / size * 1000:>21.1f} | "
            f"{emulator_cpu:>14.1f} | "
            f"one direct check (no Kubernetes): {baseline:.1f} ms",
            flush=True,
        )
    print("target: 1,000 loops in under 60 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
