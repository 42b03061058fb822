"""The collector under load, beside a bare aiohttp handler doing the same parsing and no I/O.

Both servers run as processes of their own (as they would in a pod), on this machine's
loopback; one client process drives them at a fixed concurrency with the same bodies:

  single    one record per POST /v1/usage (application/json)
  batched   --batch records per POST (application/x-ndjson)

The bare handler reads the body and parses it as the collector does (strict JSON, one
object or NDJSON lines), answers ids it made up, and writes nothing: the floor of what
any HTTP ingestion in Python costs here. Rounds alternate the two servers; the best of
each is kept. The soak then posts single records to the collector for --soak seconds
and samples its resident memory, its writer process's included: flat means the last
sample is within 10% of the one taken after the first minute (or after a fifth of a
shorter soak).

Targets: batched records/s >= 0.5x the bare handler's; single-record p99 <= 3x its p99;
memory flat over the soak (300 s for the issue's figure).

Usage: python bench/collector_load.py [--requests 10000] [--batch 100] [--batches 1000]
       [--concurrency 16] [--rounds 3] [--soak 300] [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

TARGETS = {"batched": 0.5, "single_p99": 3.0, "soak_growth": 1.10}

BARE_SERVER = r"""
import asyncio, sys
from aiohttp import web
from afs.continuous.collector.payloads import parse_json

async def usage(request):
    raw = await request.read()
    if request.content_type == "application/json":
        items = [parse_json(raw, what="the body")]
    else:
        items = [parse_json(line, what="a line") for line in raw.split(b"\n") if line.strip()]
    return web.json_response({"ids": [f"id{i}" for i in range(len(items))]})

async def serve():
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.add_routes([web.post("/v1/usage", usage)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    print("listening", file=sys.stderr, flush=True)
    await asyncio.Event().wait()

asyncio.run(serve())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rows(count: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(2000)]
    return [
        {"query": " ".join(rng.choices(words, k=12)),
         "response": " ".join(rng.choices(words, k=40)), "model": "nayru-v1",
         "latency_ms": round(rng.uniform(50, 900), 1), "quality_score": round(rng.random(), 3)}
        for _ in range(count)
    ]  # fmt: skip


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def rss_mib(self) -> float:
        """The server's resident memory with its children's (the collector's writer)."""
        return sum(_rss_mib(pid) for pid in [self.process.pid, *_children(self.process.pid)])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def _start(command: list[str], port: int) -> Server:
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    assert process.stderr is not None
    line = process.stderr.readline().decode()
    if "listening" not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line}{process.stderr.read().decode()}")
    return Server(process, f"http://127.0.0.1:{port}")


def start_collector(db: str) -> Server:
    port = _free_port()
    return _start(
        [sys.executable, "-m", "afs.continuous", "collect", "--db", db, "--host", "127.0.0.1",
         "--port", str(port), "--no-auth"],
        port,
    )  # fmt: skip


def start_bare() -> Server:
    port = _free_port()
    return _start([sys.executable, "-c", BARE_SERVER, str(port)], port)


@dataclass
class Figures:
    records_per_s: float
    p50_ms: float
    p99_ms: float


async def drive(url: str, bodies: list[tuple[bytes, str, int]], concurrency: int) -> Figures:
    """Post every body with ``concurrency`` in flight; every answer must be a success."""
    latencies: list[float] = []
    records = sum(count for _, _, count in bodies)
    queue = list(reversed(bodies))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while queue:
                body, ctype, _count = queue.pop()
                started = time.perf_counter()
                async with session.post(
                    f"{url}/v1/usage", data=body, headers={"Content-Type": ctype}
                ) as answer:
                    await answer.read()
                    if answer.status != 200:
                        raise RuntimeError(f"{answer.status}: {await answer.text()}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return Figures(records / elapsed, cuts[49] * 1000, cuts[98] * 1000)


def bodies_for(rows: list[dict[str, object]], batch: int) -> list[tuple[bytes, str, int]]:
    if batch == 1:
        return [(json.dumps(row).encode(), "application/json", 1) for row in rows]
    return [
        ("\n".join(json.dumps(r) for r in rows[i : i + batch]).encode(),
         "application/x-ndjson", len(rows[i : i + batch]))
        for i in range(0, len(rows), batch)
    ]  # fmt: skip


def _database(backend: str, tmp: Path, name: str) -> str:
    if backend == "sqlite":
        return str(tmp / f"{name}.db")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from write_path import _fresh_pg, _pg_base

    return _fresh_pg(_pg_base())


def _mark(ok: bool) -> str:
    return "✔" if ok else "✘"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=10_000,
        help="single-record posts a round (of 2,000, the p99 was the 20th slowest, and the "
        "first post on each of the 16 connections, which opens it, was 16 of those 20)",
    )  # fmt: skip
    parser.add_argument("--batch", type=int, default=100, help="records per batched post")
    parser.add_argument(
        "--batches", type=int, default=1000,
        help="batched posts a round (200 made a round of ~0.3 s, its start-up a fifth of it)",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (best kept)")
    parser.add_argument("--soak", type=float, default=300, help="soak seconds (0: none)")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args(argv)
    single = bodies_for(_rows(args.requests, 1), 1)
    batched = bodies_for(_rows(args.batch * args.batches, 2), args.batch)
    best: dict[str, dict[str, Figures]] = {}

    def keep(kind: str, who: str, figures: Figures) -> None:
        """The best of the rounds, each figure on its own (noise only ever slows)."""
        current = best.setdefault(kind, {}).get(who)
        best[kind][who] = figures if current is None else Figures(
            max(current.records_per_s, figures.records_per_s),
            min(current.p50_ms, figures.p50_ms), min(current.p99_ms, figures.p99_ms),
        )  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        for number in range(args.rounds):
            print(f"round {number + 1}/{args.rounds} …", file=sys.stderr)
            for who in ("collector", "bare"):
                server = (
                    start_collector(_database(args.backend, Path(tmp), f"r{number}"))
                    if who == "collector" else start_bare()
                )  # fmt: skip
                try:
                    keep("single", who, asyncio.run(drive(server.url, single, args.concurrency)))
                    keep("batched", who, asyncio.run(drive(server.url, batched, args.concurrency)))
                finally:
                    server.stop()
        print(
            f"{args.concurrency} in flight; {args.requests} single posts, {args.batches} posts "
            f"of {args.batch}; {args.backend}; best of {args.rounds} alternating rounds"
        )
        for kind in ("single", "batched"):
            ours, bare = best[kind]["collector"], best[kind]["bare"]
            print(
                f"{kind:<8} collector {ours.records_per_s:>9,.0f} rec/s p50 {ours.p50_ms:6.2f} ms "
                f"p99 {ours.p99_ms:6.2f} ms | bare handler {bare.records_per_s:>9,.0f} rec/s "
                f"p50 {bare.p50_ms:6.2f} ms p99 {bare.p99_ms:6.2f} ms"
            )
        ratio = best["batched"]["collector"].records_per_s / best["batched"]["bare"].records_per_s
        p99 = best["single"]["collector"].p99_ms / best["single"]["bare"].p99_ms
        for label, value, target, ok in (
            ("batched records/s ratio", ratio, f"≥ {TARGETS['batched']}",
             ratio >= TARGETS["batched"]),
            ("single p99 ratio", p99, f"≤ {TARGETS['single_p99']}",
             p99 <= TARGETS["single_p99"]),
        ):  # fmt: skip
            print(f"{label:<24} {value:4.2f}  target {target} {_mark(ok)}")
        if args.soak > 0:
            soak(args, Path(tmp))
    return 0


def soak(args: argparse.Namespace, tmp: Path) -> None:
    database = _database(args.backend, tmp, "soak")
    server = start_collector(database)
    samples: list[tuple[float, float]] = []
    rows = _rows(1000, 3)
    log = Path(f"{database}-wal")  # SQLite's write-ahead log: bounded too
    largest_log = 0.0
    try:
        started = time.monotonic()
        batch = 0
        while (elapsed := time.monotonic() - started) < args.soak:
            part = bodies_for(rows, 1) if batch % 2 == 0 else bodies_for(rows, args.batch)
            asyncio.run(drive(server.url, part, args.concurrency))
            batch += 1
            samples.append((elapsed, server.rss_mib()))
            if log.exists():
                largest_log = max(largest_log, log.stat().st_size / 2**20)
            print(f"soak {elapsed:5.0f}s rss {samples[-1][1]:6.1f} MiB", file=sys.stderr)
    finally:
        server.stop()
    if args.backend == "sqlite":
        print(f"soak: SQLite's write-ahead log at most {largest_log:.1f} MiB")
    settle = min(60.0, args.soak / 5)
    after = [rss for at, rss in samples if at >= settle] or [samples[-1][1]]
    growth = samples[-1][1] / after[0]
    target = TARGETS["soak_growth"]
    print(
        f"soak {args.soak:.0f}s: rss {after[0]:.1f} MiB after {settle:.0f}s, "
        f"{samples[-1][1]:.1f} MiB at the end, peak {max(r for _, r in samples):.1f} MiB; "
        f"growth {growth:4.2f}x  target ≤ {target} {_mark(growth <= target)}"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
