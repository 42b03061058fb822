"""Does a trigger check cost more as history grows? The same new traffic, two histories.

Each database holds a history (10,000, then 1,000,000 records over the 30 days before
the last retrain) and the same 2,000 records logged since. Measured on both backends,
median of 15 calls after 8 warm ones: ``count_new_samples(since=last retrain)`` (exact, uncapped)
and a full ``check_triggers()`` (every rule on). A check should cost what the new data
costs, not what the history does: the target is the 1,000,000-record figure at most
1.5x the 10,000-record one. PostgreSQL's tables are analysed after loading, as
autovacuum would have done on a running system. The baseline beside each is the same
work's floor: a plain ``COUNT(*)`` of the new records through the timestamp index.

Usage: python bench/trigger_scaling.py [--small 10000] [--large 1000000]
       [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from afs.continuous import RetrainTrigger, TriggerConfig, UsageLogger
from afs.continuous.core.triggers import TriggerState

sys.path.insert(0, str(Path(__file__).resolve().parent))
from postgres_ingest import _median_ms
from write_path import _fresh_pg, _pg_base

TARGET = 1.5
NEW = 2_000
CHUNK = 10_000
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=7)
LAST_RETRAIN = NOW - timedelta(hours=20)


def _rows(count: int, start: datetime, span: timedelta, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    step = span / max(count, 1)
    return [
        {
            "query": f"question {seed}-{i} {rng.random():.6f}",
            "response": f"answer {rng.randint(0, 10**9)}",
            "model": rng.choice(["nayru-v1", "nayru-v2"]),
            "latency_ms": round(rng.uniform(50, 900), 1),
            "quality_score": round(rng.random(), 3),
            "user_feedback": rng.choice([None, None, 1, 1, -1]),
            "timestamp": (start + step * i).isoformat(),
        }
        for i in range(count)
    ]


def _load(target: str, history: int) -> None:
    first = LAST_RETRAIN - timedelta(days=30)
    with UsageLogger(db_path=target, clock=lambda: NOW) as logger:
        for offset in range(0, history, CHUNK):
            count = min(CHUNK, history - offset)
            part = timedelta(days=30) * count / history
            logger.log_many(_rows(count, first + timedelta(days=30) * offset / history, part,
                                  seed=offset))  # fmt: skip
            if offset and offset % 200_000 == 0:
                print(f"  loaded {offset:,}", file=sys.stderr)
        logger.log_many(_rows(NEW, LAST_RETRAIN + timedelta(minutes=1), timedelta(hours=19),
                              seed=-1))  # fmt: skip
        logger.store.put_state(
            "bench", TriggerState(last_retrain=LAST_RETRAIN).to_dict(), at=LAST_RETRAIN
        )
    if target.startswith("postgresql://"):  # what autovacuum does within a minute of a load
        import psycopg

        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("ANALYZE usage")


def measure(target: str) -> dict[str, float]:
    with UsageLogger(db_path=target, clock=lambda: NOW) as logger:
        config = TriggerConfig(enable_error_rate=True, min_new_samples=1000)
        trigger = RetrainTrigger(logger, config, state_key="bench", clock=lambda: NOW)
        return {
            "count": _median_ms(lambda: logger.db.count_new_samples(LAST_RETRAIN, 0.7)),
            "check": _median_ms(trigger.check_triggers),
            "floor": _median_ms(lambda: logger.store.count_records(_since_query(LAST_RETRAIN))),
        }


def _since_query(since: datetime) -> Any:
    from afs.continuous.store import RecordQuery

    return RecordQuery(since=since)


def _targets(backend: str, tmp: Path, size: int) -> str:
    if backend == "sqlite":
        return str(tmp / f"history-{size}.db")
    return _fresh_pg(_pg_base())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            figures = {}
            for size in (args.small, args.large):
                print(f"{backend}: loading {size:,} + {NEW:,} records …", file=sys.stderr)
                target = _targets(backend, Path(tmp), size)
                _load(target, size)
                figures[size] = measure(target)
            small, large = figures[args.small], figures[args.large]
            for key, label in (("count", "count_new_samples()"), ("check", "check_triggers()")):
                ratio = large[key] / small[key]
                mark = "✔" if ratio <= TARGET else "✘"
                lines.append(
                    f"{backend:<9} {label:<20} {small[key]:8.2f} ms at {args.small:,}  "
                    f"{large[key]:8.2f} ms at {args.large:,}  growth {ratio:5.2f}x "
                    f"(target ≤ {TARGET}x) {mark}   floor COUNT(*) of the new records: "
                    f"{small['floor']:.2f} / {large['floor']:.2f} ms"
                )
    print(f"history before the last retrain, then the same {NEW:,} new records; medians")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
