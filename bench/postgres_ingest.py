"""PostgreSQL store at production scale, against a throwaway server (pgserver) or the
server named by AFS_BENCH_DATABASE_URL. Prints one table; every figure of ours stands
beside a baseline measured in the same run:

  (a) records/s (best of two alternating rounds) through the batched path (``log_many``,
      10,000 per call) beside raw psycopg ``COPY`` of the same rows (already checked,
      hashed, with ids) into the same kind of table (partitioned, rollup triggers) in the
      same server; target ratio >= 0.8.
      Also raw COPY into a plain table with the same columns and indexes: what the
      partitions and the trigger-maintained rollup cost the database.
  (b) ``log()`` through the buffered logger: records/s on the caller's thread (target
      >= 20,000/s), and including the final ``flush()``.
  (c) window statistics and a full trigger check (every rule on) at 10,000 and at
      1,000,000 records; target <= 20 ms each, and within 2x of the 10,000 figure. The
      check is measured in the steady state (last retrain two days ago) and for a loop
      that never retrained, whose sample count starts at the oldest record.
  (d) ``generate()`` of the 1,000,000 records (no filters, dedupe on): rows/s, and the
      peak RSS of a child process beside the same child stopping before generating;
      target <= 80 MiB above it.

Usage: python bench/postgres_ingest.py [--records 1000000] [--ingest 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg

from afs.continuous import RetrainTrigger, TriggerConfig, UsageLogger
from afs.continuous.core.triggers import TriggerState
from afs.continuous.records import normalize_record, record_from_mapping
from afs.continuous.store.postgres import RECORD_COLUMNS

CHUNK = 10_000

_CHILD = """
import json, sys, time
from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger
logger = UsageLogger(url=sys.argv[1])
result = None
start = time.perf_counter()
if sys.argv[3] == "1":
    config = DataGeneratorConfig(min_quality_score=0.0, min_user_feedback=None)
    result = TrainingDataGenerator(logger, config).generate(sys.argv[2]).final_count
elapsed = time.perf_counter() - start
with open("/proc/self/status") as status:
    rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": elapsed, "rss_kib": rss_kib, "final_count": result}))
"""


def _server_url() -> str:
    external = os.environ.get("AFS_BENCH_DATABASE_URL")
    if external:
        return external
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

        server = get_server(tempfile.mkdtemp(prefix="afs-bench-pg-"), cleanup_mode="delete")
    return str(server.get_uri())


def _schema(base: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}options={quote(f'-csearch_path={name}')}"


def _rows(start: int, count: int, rng: random.Random, t0: datetime) -> list[dict[str, Any]]:
    """Traffic over the last 30 days: two models, uniform quality, 30% thumbs up,
    10% thumbs down, about 10% repeated exchanges."""
    rows = []
    for i in range(start, start + count):
        key = rng.randrange(i + 1) if rng.random() < 0.1 else i
        draw = rng.random()
        rows.append(
            {
                "query": f"How do I use opcode {key % 256:02X} in routine {key}? " + "context " * 8,
                "response": f"Opcode {key % 256:02X} loads the accumulator in {key} "
                + "detail " * 30,
                "model": "nayru-v1" if i % 2 else "nayru-v2",
                "expert": "asm",
                "latency_ms": rng.lognormvariate(5, 0.5),
                "quality_score": rng.random(),
                "token_count": 60,
                "user_feedback": 1 if draw < 0.3 else (-1 if draw < 0.4 else None),
                "timestamp": t0 + timedelta(seconds=i * 2_592_000 / 1_000_000),
            }
        )
    return rows


def _median_ms(fn: Callable[[], object], repeat: int = 15, warm: int = 8) -> float:
    """Median of ``repeat`` runs after ``warm`` runs (a running loop's pooled
    connections have planned these queries already)."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _raw_copy(url: str, table: str, tuples: list[tuple[Any, ...]]) -> float:
    with psycopg.connect(url) as conn:
        start = time.perf_counter()
        for offset in range(0, len(tuples), CHUNK):
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {table} ({RECORD_COLUMNS}) FROM STDIN") as copy,
            ):
                for values in tuples[offset : offset + CHUNK]:
                    copy.write_row(values)
            conn.commit()
        return len(tuples) / (time.perf_counter() - start)


def _prepared(url: str, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows as the project writes them (checked, hashed, with ids), ready to COPY,
    with the partitions they need already in place."""
    now = datetime.now(UTC)
    tuples = []
    for row in rows:
        record = normalize_record(record_from_mapping(row), now=now)
        record.id = uuid.uuid4().hex[:12]
        tuples.append(tuple(getattr(record, c.strip()) for c in RECORD_COLUMNS.split(",")))
    days = {datetime.fromisoformat(t[1]).date() for t in tuples}
    with UsageLogger(url=url) as logger:
        store = logger.store
        store._retrying(lambda conn, retried: store._ensure_partitions(conn, days))  # type: ignore[attr-defined]
    return tuples


def _ours_url(base: str, rows: list[dict[str, Any]], tuples: list[tuple[Any, ...]]) -> str:
    url = _schema(base)
    _prepared(url, rows[:1])  # schema and partitions, as on a running system
    days = {datetime.fromisoformat(t[1]).date() for t in tuples}
    with UsageLogger(url=url) as logger:
        store = logger.store
        store._retrying(lambda conn, retried: store._ensure_partitions(conn, days))  # type: ignore[attr-defined]
    return url


def bench_ingest(
    base: str, rows: list[dict[str, Any]], rounds: int = 2
) -> tuple[float, float, float, float]:
    """Best of ``rounds`` alternating runs, in records/s: log_many, buffered log_many +
    flush, raw COPY into the same kind of table, raw COPY into a plain one."""
    results = [_ingest_round(base, rows) for _ in range(rounds)]
    best = [max(r[i] for r in results) for i in range(4)]
    return best[0], best[1], best[2], best[3]


def _ingest_round(base: str, rows: list[dict[str, Any]]) -> tuple[float, float, float, float]:
    raw_url = _schema(base)
    tuples = _prepared(raw_url, rows)
    with psycopg.connect(raw_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE plain_usage (LIKE usage INCLUDING ALL)")
    plain = _raw_copy(raw_url, "plain_usage", tuples)
    same = _raw_copy(raw_url, "usage", tuples)
    with UsageLogger(url=_ours_url(base, rows, tuples)) as logger:
        start = time.perf_counter()
        for offset in range(0, len(rows), CHUNK):
            logger.log_many(rows[offset : offset + CHUNK])
        ours = len(rows) / (time.perf_counter() - start)
    with UsageLogger(url=_ours_url(base, rows, tuples)) as logger:
        buffered = logger.buffered(max_pending=len(rows) + 1, batch_size=CHUNK)
        start = time.perf_counter()
        for offset in range(0, len(rows), CHUNK):
            buffered.log_many(rows[offset : offset + CHUNK])
        buffered.close()
        background = len(rows) / (time.perf_counter() - start)
    return ours, background, same, plain


def bench_buffered(url: str, count: int) -> tuple[float, float]:
    with UsageLogger(url=url) as logger, logger.buffered(max_pending=count + 1) as buffered:
        start = time.perf_counter()
        for i in range(count):
            buffered.log(f"question {i}", f"answer {i}", "nayru-v1", "asm", 120.0, 0.8)
        caller = count / (time.perf_counter() - start)
        buffered.flush()
        total = count / (time.perf_counter() - start)
    return caller, total


def load(url: str, total: int, rng: random.Random, t0: datetime) -> None:
    with UsageLogger(url=url) as logger:
        for offset in range(0, total, CHUNK):
            logger.log_many(_rows(offset, min(CHUNK, total - offset), rng, t0))
            if offset and offset % 200_000 == 0:
                print(f"  loaded {offset:,}", file=sys.stderr)


def decisions(url: str, now: datetime) -> tuple[float, float, float]:
    """Median ms of a mid-hour window statistic, of a trigger check (every rule on) on a
    loop that never retrained (the sample count starts at the oldest record), and of one
    whose last retrain was two days ago (the steady state)."""
    with UsageLogger(url=url, clock=lambda: now) as logger:
        since = now - timedelta(hours=24, minutes=17)
        stats_ms = _median_ms(
            lambda: logger.store.statistics(since=since, until=now, model="nayru-v1")
        )
        config = TriggerConfig(enable_error_rate=True)
        fresh = RetrainTrigger(logger, config, state_key="bench-fresh", clock=lambda: now)
        fresh_ms = _median_ms(fresh.check_triggers)
        steady = RetrainTrigger(logger, config, state_key="bench-steady", clock=lambda: now)
        logger.store.put_state(
            "bench-steady",
            TriggerState(last_retrain=now - timedelta(days=2)).to_dict(),
            at=now,
        )
        steady_ms = _median_ms(steady.check_triggers)
    return stats_ms, fresh_ms, steady_ms


def _child(url: str, out: str, *, generate: bool) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, url, out, "1" if generate else "0"],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--ingest", type=int, default=200_000)
    parser.add_argument("--buffered", type=int, default=100_000)
    args = parser.parse_args(argv)
    rng = random.Random(11)
    now = datetime.now(UTC)
    t0 = now - timedelta(days=30)
    base = _server_url()
    table: list[tuple[str, str, str, str]] = []

    print(f"(a) ingest of {args.ingest:,} records …", file=sys.stderr)
    ours, background, same, plain = bench_ingest(base, _rows(0, args.ingest, rng, t0))
    table.append(
        (
            "(a) log_many() records/s",
            f"{ours:,.0f} (ratio {ours / same:.2f})",
            f"raw COPY of the same rows into the same table: {same:,.0f}",
            ">= 0.8 x raw",
        )
    )
    table.append(
        (
            "(a) buffered log_many() + flush() records/s",
            f"{background:,.0f} (ratio {background / same:.2f})",
            f"raw COPY of the same rows into the same table: {same:,.0f}",
            ">= 0.8 x raw",
        )
    )
    table.append(
        (
            "(a) cost of partitions + rollup triggers",
            f"{same:,.0f}",
            f"raw COPY into a plain table, same indexes: {plain:,.0f}",
            "",
        )
    )

    print(f"(b) buffered log() x {args.buffered:,} …", file=sys.stderr)
    caller, total = bench_buffered(_schema(base), args.buffered)
    table.append(
        (
            "(b) buffered log() records/s, caller",
            f"{caller:,.0f}",
            f"including flush(): {total:,.0f}",
            ">= 20,000",
        )
    )

    print("(c) decisions at 10,000 and at the full size …", file=sys.stderr)
    small = _schema(base)
    load(small, 10_000, random.Random(3), now - timedelta(days=30) + timedelta(days=29.7))
    small_stats, small_fresh, small_steady = decisions(small, now)
    big = _schema(base)
    load(big, args.records, rng, t0)
    big_stats, big_fresh, big_steady = decisions(big, now)
    table.append(
        (
            f"(c) window statistics ms at {args.records:,}",
            f"{big_stats:.2f}",
            f"at 10,000: {small_stats:.2f} ms",
            "<= 20, <= 2x",
        )
    )
    table.append(
        (
            f"(c) check_triggers() ms at {args.records:,}, last retrain 2 days ago",
            f"{big_steady:.2f}",
            f"at 10,000: {small_steady:.2f} ms",
            "<= 20, <= 2x",
        )
    )
    table.append(
        (
            f"(c) check_triggers() ms at {args.records:,}, never retrained",
            f"{big_fresh:.2f}",
            f"at 10,000: {small_fresh:.2f} ms",
            "<= 20, <= 2x",
        )
    )

    print("(d) generate() in a child process …", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = _child(big, f"{tmp}/none.jsonl", generate=False)
        run = _child(big, f"{tmp}/train.jsonl", generate=True)
    rate = run["final_count"] / run["seconds"]
    above = (run["rss_kib"] - baseline["rss_kib"]) / 1024
    table.append(
        (
            f"(d) generate() of {args.records:,} rows/s",
            f"{rate:,.0f}",
            f"{run['final_count']:,} samples in {run['seconds']:.1f} s",
            "",
        )
    )
    table.append(
        (
            "(d) generate() peak RSS above baseline MiB",
            f"{above:.1f}",
            f"baseline child {baseline['rss_kib'] / 1024:.1f} MiB",
            "<= 80",
        )
    )

    header = ("figure", "ours", "baseline (same run)", "target")
    widths = [max(len(r[i]) for r in [*table, header]) for i in range(4)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in table:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
