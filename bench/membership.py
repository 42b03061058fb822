"""Dataset membership: the bytes it adds per exported record, and the export's time with
it beside the same export without it (same table, same rows, same run).

For each store (SQLite, and a throwaway PostgreSQL unless ``--sqlite-only``):
``--records`` records are logged, then exported as chatml with
``record_membership=False`` and ``True``, alternating, ``--rounds`` rounds. The ratio of
the best times must be at most 1.2. Bytes per record: the growth of the ``datasets``
table (SQLite: the database's pages; PostgreSQL: ``pg_total_relation_size``, TOAST included) per
export, divided by the records it took.

Usage: python bench/membership.py [--records 20000] [--rounds 3] [--sqlite-only]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from write_path import _fresh_pg, _pg_base

TARGET = 1.2


def _fill(target: str, records: int) -> None:
    rng = random.Random(3)
    words = [f"w{i}" for i in range(5000)]
    rows = [
        {"query": " ".join(rng.choices(words, k=25)), "model": "m", "quality_score": 0.9,
         "response": " ".join(rng.choices(words, k=60)), "user_feedback": 1}
        for _ in range(records)
    ]  # fmt: skip
    with UsageLogger(target) as logger:
        for start in range(0, records, 5000):
            logger.log_many(rows[start : start + 5000])


def _export(target: str, out: Path, *, membership: bool) -> tuple[float, int]:
    with UsageLogger(target) as logger:
        generator = TrainingDataGenerator(logger, DataGeneratorConfig(record_membership=membership))
        start = time.perf_counter()
        result = generator.generate(out)
        return time.perf_counter() - start, result.final_count


def _datasets_bytes(target: str) -> int:
    if target.startswith("postgresql"):
        import psycopg

        with psycopg.connect(target) as conn:
            row = conn.execute("SELECT pg_total_relation_size('datasets')").fetchone()
            return int(row[0]) if row else 0
    # only the datasets table grows during an export: the database's pages tell its size
    with sqlite3.connect(target) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])


def measure(name: str, target: str, records: int, rounds: int, out_dir: Path) -> bool:
    _fill(target, records)
    best: dict[bool, float] = {}
    grown: list[int] = []
    for round_ in range(1, rounds + 1):
        for membership in (False, True):
            before = _datasets_bytes(target)
            took, count = _export(target, out_dir / f"{name}.jsonl", membership=membership)
            assert count == records, count
            if membership:
                grown.append(_datasets_bytes(target) - before)
            best[membership] = min(best.get(membership, took), took)
            label = "with membership" if membership else "without"
            print(f"  {name} round {round_} {label:16} {took * 1000:8.1f} ms")
    ratio = best[True] / best[False]
    per_record = min(grown) / records
    ok = ratio <= TARGET
    print(
        f"{name}: {records:,} records, best of {rounds} alternating rounds: without "
        f"{best[False] * 1000:.0f} ms, with {best[True] * 1000:.0f} ms, ratio {ratio:.2f} "
        f"(target <= {TARGET}) {'✔' if ok else '✘'}; membership {per_record:.1f} bytes per "
        f"exported record"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ok &= measure("sqlite", str(out / "usage.db"), args.records, args.rounds, out)
        if not args.sqlite_only:
            url = _fresh_pg(_pg_base())
            ok &= measure("postgresql", url, args.records, args.rounds, out)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
