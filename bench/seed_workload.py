"""The seed document's workload, measured: logging, generation, statistics, counting.

Prints one table. Every figure of ours is printed beside a baseline measured in the same
run on the same machine:

  (a) 20,000 ``log()`` calls, records/s, beside raw ``sqlite3`` inserts of the same rows
      with one commit per row (default journal, as the original did, and WAL+NORMAL);
      and the batched paths (``log_many``, and ``log()`` through the buffered logger
      followed by ``flush()``) beside a raw ``executemany``.
  (b) ``generate()`` (chatml) over 200,000 logged records (uniform quality, 30% positive
      and 10% negative feedback, 10% exact duplicates): seconds, and the peak RSS of a
      child process beside the same child that stops before generating.
  (c) ``get_statistics()`` and (d) ``count_new_samples()`` on that database, beside a
      plain ``SELECT COUNT(*)`` over the same table.
  (e) ``check_triggers()`` with every rule enabled and (f) ``compare_models()`` on it,
      beside the full scans the original ran for the same answers.

Usage: python bench/seed_workload.py [--records 200000] [--log-calls 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from afs.continuous import (
    ABTestConfig,
    ABTestManager,
    RetrainTrigger,
    TriggerConfig,
    UsageLogger,
)
from afs.continuous.records import new_record_id

TARGETS = {
    "log": 20_000.0,
    "batch": 100_000.0,
    "generate_s": 0.6,
    "generate_mib": 60.0,
    "stats_ms": 10.0,
    "count_ms": 10.0,
    "check_ms": 10.0,
    "compare_ms": 20.0,
}

_CHILD = """
import sys, time, json
from afs.continuous import UsageLogger, TrainingDataGenerator, DataGeneratorConfig
logger = UsageLogger(sys.argv[1])
generate = sys.argv[3] == "1"
t = time.perf_counter()
result = None
if generate:
    config = DataGeneratorConfig(min_quality_score=0.7, min_user_feedback=1, format_type="chatml")
    result = TrainingDataGenerator(logger, config).generate(sys.argv[2]).final_count
elapsed = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) parent
with open("/proc/self/status") as status:
    rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": elapsed, "rss_kib": rss_kib, "final_count": result}))
"""


def _rows(n: int, rng: random.Random, start: datetime) -> list[dict[str, Any]]:
    """Synthetic production traffic; 10% of records repeat an earlier exchange exactly."""
    rows: list[dict[str, Any]] = []
    span = timedelta(days=30) / n
    for i in range(n):
        if rows and rng.random() < 0.10:
            source = rows[rng.randrange(len(rows))]
            query, response = source["query"], source["response"]
        else:
            query = f"How do I use opcode {i % 256:02X} in routine {i}? " + "context " * 8
            response = (
                f"Opcode {i % 256:02X} loads the accumulator; in routine {i} " + "detail " * 30
            )
        draw = rng.random()
        feedback = 1 if draw < 0.30 else (-1 if draw < 0.40 else None)
        rows.append(
            {
                "query": query,
                "response": response,
                "model": rng.choice(("nayru-v1", "nayru-v2")),
                "expert": "asm",
                "latency_ms": rng.lognormvariate(5, 0.5),
                "quality_score": rng.random(),
                "token_count": 60,
                "user_feedback": feedback,
                "timestamp": start + span * i,
            }
        )
    return rows


def _raw_table(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE usage (id TEXT PRIMARY KEY, timestamp TEXT NOT NULL, query TEXT NOT NULL, "
        "response TEXT NOT NULL, model TEXT NOT NULL, expert TEXT, latency_ms REAL, "
        "token_count INTEGER, quality_score REAL DEFAULT 0.0, user_feedback INTEGER)"
    )


def _raw_params(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        new_record_id(),
        row["timestamp"].isoformat(),
        row["query"],
        row["response"],
        row["model"],
        row["expert"],
        row["latency_ms"],
        row["token_count"],
        row["quality_score"],
        row["user_feedback"],
    )


_RAW_INSERT = "INSERT INTO usage VALUES (?,?,?,?,?,?,?,?,?,?)"


def bench_raw_per_row(path: Path, rows: list[dict[str, Any]], *, wal: bool) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    _raw_table(conn)
    params = [_raw_params(r) for r in rows]
    start = time.perf_counter()
    for p in params:
        conn.execute("BEGIN")
        conn.execute(_RAW_INSERT, p)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def bench_raw_batch(path: Path, rows: list[dict[str, Any]]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    _raw_table(conn)
    params = [_raw_params(r) for r in rows]
    start = time.perf_counter()
    for offset in range(0, len(params), 10_000):
        conn.execute("BEGIN")
        conn.executemany(_RAW_INSERT, params[offset : offset + 10_000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def bench_log(path: Path, rows: list[dict[str, Any]]) -> float:
    with UsageLogger(path) as logger:
        start = time.perf_counter()
        for r in rows:
            logger.log(
                r["query"],
                r["response"],
                r["model"],
                r["expert"],
                r["latency_ms"],
                r["quality_score"],
                r["token_count"],
            )
        return len(rows) / (time.perf_counter() - start)


def bench_log_many(path: Path, rows: list[dict[str, Any]]) -> float:
    with UsageLogger(path) as logger:
        start = time.perf_counter()
        for offset in range(0, len(rows), 10_000):
            logger.log_many(rows[offset : offset + 10_000])
        return len(rows) / (time.perf_counter() - start)


def bench_buffered(path: Path, rows: list[dict[str, Any]]) -> float:
    """``log()`` one record at a time through the buffered logger, then ``flush()``."""
    with UsageLogger(path) as logger, logger.buffered() as buffered:
        start = time.perf_counter()
        for r in rows:
            buffered.log(
                r["query"],
                r["response"],
                r["model"],
                r["expert"],
                r["latency_ms"],
                r["quality_score"],
                r["token_count"],
                user_feedback=r["user_feedback"],
                timestamp=r["timestamp"],
            )
        buffered.flush()
        return len(rows) / (time.perf_counter() - start)


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def bench_loop_decisions(db: Path) -> list[tuple[str, str, str, str]]:
    """(e) check_triggers() with every rule enabled, (f) compare_models(), on the big DB.

    Baselines: what the original computed on each call — a full scan counting the
    records a retrain would take, and per-model averages over the whole table.
    """
    now = datetime.now(UTC)
    clock = _Clock(now - timedelta(days=20))
    rows = []
    with UsageLogger(db, clock=clock) as logger:
        trigger = RetrainTrigger(
            logger,
            TriggerConfig(enable_error_rate=True, min_new_samples=1000),
            clock=clock,
        )
        clock.now = now
        check_ms = _median_ms(trigger.check_triggers)
        manager = ABTestManager(
            logger,
            ABTestConfig(evaluation_window_hours=24 * 30),
            state_file=db.parent / "ab_state.json",
            clock=clock,
        )
        clock.now = now - timedelta(days=20)
        manager.set_champion("nayru-v1", "v1")
        manager.deploy_challenger("nayru-v2", "v2", traffic_weight=0.5)
        clock.now = now
        compare_ms = _median_ms(manager.compare_models)
        result = manager.compare_models()
        assert result is not None and result.challenger_metrics["count"] > 0
    raw = sqlite3.connect(db)
    scan_ms = _median_ms(
        lambda: raw.execute(
            "SELECT COUNT(DISTINCT dedupe_hash) FROM usage "
            "WHERE quality_score >= 0.7 AND user_feedback >= 1"
        ).fetchone()
    )
    per_model_ms = _median_ms(
        lambda: raw.execute(
            "SELECT model, AVG(quality_score), AVG(latency_ms), "
            "AVG(user_feedback = 1) FROM usage GROUP BY model"
        ).fetchall()
    )
    raw.close()
    rows.append(
        (
            "(e) check_triggers() ms, all rules on",
            f"{check_ms:.2f}",
            f"raw full scan of accepted records: {scan_ms:.2f} ms",
            f"<= {TARGETS['check_ms']:.0f}",
        )
    )
    rows.append(
        (
            "(f) compare_models() ms",
            f"{compare_ms:.2f}",
            f"raw per-model averages, full scan: {per_model_ms:.2f} ms",
            f"<= {TARGETS['compare_ms']:.0f}",
        )
    )
    return rows


def _child(db: Path, out: Path, *, generate: bool) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db), str(out), "1" if generate else "0"],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _median_ms(fn: Any, repeat: int = 25) -> float:
    fn()  # warm the page cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--log-calls", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    start = datetime.now(UTC) - timedelta(days=30)
    log_rows = _rows(args.log_calls, rng, start)
    big_rows = _rows(args.records, rng, start)
    table: list[tuple[str, str, str, str]] = []

    with tempfile.TemporaryDirectory(prefix="afs-bench-") as tmp:
        d = Path(tmp)
        print(f"(a) logging {args.log_calls:,} records one by one …", file=sys.stderr)
        raw_default = bench_raw_per_row(d / "raw_default.db", log_rows[:2000], wal=False)
        raw_wal = bench_raw_per_row(d / "raw_wal.db", log_rows, wal=True)
        ours_log = bench_log(d / "log.db", log_rows)
        table.append(
            (
                "(a) log() records/s",
                f"{ours_log:,.0f}",
                f"raw sqlite3 commit/row: {raw_default:,.0f} (default journal), "
                f"{raw_wal:,.0f} (WAL)",
                f">= {TARGETS['log']:,.0f}",
            )
        )

        print(f"(a) batched: {args.records:,} records through log_many …", file=sys.stderr)
        raw_batch = bench_raw_batch(d / "raw_batch.db", big_rows)
        db = d / "usage.db"
        ours_batch = bench_log_many(db, big_rows)
        table.append(
            (
                "(a) log_many() records/s",
                f"{ours_batch:,.0f}",
                f"raw executemany, WAL: {raw_batch:,.0f}",
                f">= {TARGETS['batch']:,.0f}",
            )
        )
        ours_buffered = bench_buffered(d / "buffered.db", big_rows)
        table.append(
            (
                "(a) buffered log() + flush() records/s",
                f"{ours_buffered:,.0f}",
                f"raw executemany, WAL: {raw_batch:,.0f}",
                f">= {TARGETS['batch']:,.0f}",
            )
        )

        print("(b) generate() in a child process …", file=sys.stderr)
        baseline = _child(db, d / "none.jsonl", generate=False)
        runs = [_child(db, d / "train.jsonl", generate=True) for _ in range(3)]
        best = min(runs, key=lambda r: r["seconds"])
        rss_above = (max(r["rss_kib"] for r in runs) - baseline["rss_kib"]) / 1024
        table.append(
            (
                "(b) generate() seconds",
                f"{best['seconds']:.3f}",
                f"{best['final_count']:,} samples written",
                f"<= {TARGETS['generate_s']}",
            )
        )
        table.append(
            (
                "(b) generate() peak RSS above baseline MiB",
                f"{rss_above:.1f}",
                f"baseline child peak RSS {baseline['rss_kib'] / 1024:.1f} MiB",
                f"<= {TARGETS['generate_mib']:.0f}",
            )
        )

        print("(c, d) statistics and counting …", file=sys.stderr)
        with UsageLogger(db) as logger:
            since = datetime.now(UTC) - timedelta(days=40)
            stats_ms = _median_ms(logger.get_statistics)
            window_ms = _median_ms(lambda: logger.get_statistics(since=since))
            count_ms = _median_ms(lambda: logger.db.count_new_samples(since, 0.5))
        raw = sqlite3.connect(db)
        count_all_ms = _median_ms(lambda: raw.execute("SELECT COUNT(*) FROM usage").fetchone())
        raw.close()
        table.append(
            (
                "(c) get_statistics() ms",
                f"{stats_ms:.2f}",
                f"raw SELECT COUNT(*): {count_all_ms:.2f} ms",
                f"<= {TARGETS['stats_ms']:.0f}",
            )
        )
        table.append(
            (
                "(c) get_statistics(since=mid-hour) ms",
                f"{window_ms:.2f}",
                f"raw SELECT COUNT(*): {count_all_ms:.2f} ms",
                f"<= {TARGETS['stats_ms']:.0f}",
            )
        )
        table.append(
            (
                "(d) count_new_samples() ms",
                f"{count_ms:.2f}",
                f"raw SELECT COUNT(*): {count_all_ms:.2f} ms",
                f"<= {TARGETS['count_ms']:.0f}",
            )
        )

        print("(e, f) trigger check and A/B comparison …", file=sys.stderr)
        table += bench_loop_decisions(db)

    widths = [
        max(len(row[i]) for row in [*table, ("figure", "ours", "baseline", "target")])
        for i in range(4)
    ]
    header = ("figure", "ours", "baseline (same run)", "target")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in table:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
