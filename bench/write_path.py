"""The write path against raw writes of the same rows into the same table.

Every figure of ours stands beside a baseline doing the same work in the same run: the
same rows (as ours stores them: checked, hashed, with ids) into a table made by our own
migrations (same columns, indexes, triggers), with nothing of ours in between. Rounds
alternate ours and the baseline, each on a fresh database; the best of each is kept.

  SQLite      log_many(rows)       vs executemany of the rows, one transaction
              log() per row        vs one autocommit INSERT per row
  PostgreSQL  log_many(rows)       vs COPY of the rows (text and binary; the faster)
              buffered log_many()  vs the same COPY

Usage: python bench/write_path.py [--rows 50000] [--single 5000] [--rounds 3]
       [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from afs.continuous import UsageLogger
from afs.continuous.records import RECORD_FIELDS, new_record_ids, normalized_batch
from afs.continuous.store.postgres.rows import _COPY_TYPES

TARGETS = {"sqlite_batch": 0.6, "sqlite_single": 0.6, "pg_batch": 0.9, "pg_buffered": 0.8}
CHUNK = 10_000
COLUMNS = ", ".join(RECORD_FIELDS)


def make_rows(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Rows as a model server logs them: no id, no timestamp (they are given on write)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(3000)]
    return [
        {
            "query": " ".join(rng.choices(words, k=rng.randint(5, 30))),
            "response": " ".join(rng.choices(words, k=rng.randint(20, 80))),
            "model": rng.choice(["nayru-v1", "nayru-v2"]),
            "expert": rng.choice(["asm", "docs", None]),
            "latency_ms": round(rng.uniform(50, 900), 1),
            "quality_score": round(rng.random(), 3),
            "user_feedback": rng.choice([None, None, 1, -1]),
        }
        for _ in range(count)
    ]


def stored_tuples(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows exactly as our store writes them, for the baselines.

    Ids included, and drawn like ours: a prefix of the second, then random bits. Ids in
    ascending order would always land on the index's last page, a cheaper write than
    either store makes, so the baselines would not be doing the same work.
    """
    records = normalized_batch(rows, now=datetime.now(UTC) - timedelta(minutes=1))
    for record, new_id in zip(records, new_record_ids(len(records)), strict=True):
        record.id = new_id
    return [tuple(getattr(r, f) for f in RECORD_FIELDS) for r in records]


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


# --- SQLite ------------------------------------------------------------------------------


def _fresh_sqlite(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}-{time.monotonic_ns()}.db"
    UsageLogger(path).close()  # our migrations: the same table, indexes and triggers
    return path


def _raw_sqlite(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def sqlite_round(tmp: Path, rows: list[dict[str, Any]], single: int) -> dict[str, float]:
    tuples = stored_tuples(rows)
    insert = f"INSERT INTO usage ({COLUMNS}) VALUES ({', '.join('?' * len(RECORD_FIELDS))})"
    figures: dict[str, float] = {}

    conn = _raw_sqlite(_fresh_sqlite(tmp, "raw"))

    def raw_batch() -> None:
        for offset in range(0, len(tuples), CHUNK):
            conn.execute("BEGIN")
            conn.executemany(insert, tuples[offset : offset + CHUNK])
            conn.execute("COMMIT")

    figures["raw_batch"] = len(rows) / _timed(raw_batch)
    conn.close()

    with UsageLogger(_fresh_sqlite(tmp, "ours")) as logger:
        figures["ours_batch"] = len(rows) / _timed(
            lambda: [logger.log_many(rows[o : o + CHUNK]) for o in range(0, len(rows), CHUNK)]
        )

    conn = _raw_sqlite(_fresh_sqlite(tmp, "raw1"))
    figures["raw_single"] = single / _timed(
        lambda: [conn.execute(insert, values) for values in tuples[:single]]
    )
    conn.close()

    with UsageLogger(_fresh_sqlite(tmp, "ours1")) as logger:
        log = logger.log

        def one_by_one() -> None:
            for r in rows[:single]:
                log(r["query"], r["response"], r["model"], r["expert"], r["latency_ms"],
                    r["quality_score"], user_feedback=r["user_feedback"])  # fmt: skip

        figures["ours_single"] = single / _timed(one_by_one)
    return figures


# --- PostgreSQL --------------------------------------------------------------------------


def _pg_base() -> str:
    import os

    external = os.environ.get("AFS_BENCH_DATABASE_URL")
    if external:
        return external
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

        return str(
            get_server(tempfile.mkdtemp(prefix="afs-bench-pg-"), cleanup_mode="delete").get_uri()
        )


def _fresh_pg(base: str) -> str:
    import uuid
    from urllib.parse import quote

    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    joiner = "&" if "?" in base else "?"
    url = f"{base}{joiner}options={quote(f'-csearch_path={schema}')}"
    with UsageLogger(url=url) as logger:  # our migrations, and today's partitions
        logger.log_many([{"query": "warm", "response": "up", "model": "m"}])
        logger.store.deduplicate()  # keep the row: same table state for every contender
    return url


def _raw_copy(url: str, tuples: list[tuple[Any, ...]], *, binary: bool) -> float:
    import psycopg

    statement = f"COPY usage ({COLUMNS}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")
    with psycopg.connect(url) as conn:
        start = time.perf_counter()
        for offset in range(0, len(tuples), CHUNK):
            with conn.cursor() as cur, cur.copy(statement) as copy:
                if binary:  # the columns' types as the store declares them
                    copy.set_types(list(_COPY_TYPES))
                for values in tuples[offset : offset + CHUNK]:
                    copy.write_row(values)
            conn.commit()
        return len(tuples) / (time.perf_counter() - start)


def pg_round(base: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    tuples = [
        (t[0], datetime.fromisoformat(t[1]), *t[2:]) for t in stored_tuples(rows)
    ]  # binary COPY takes a datetime; text COPY prints it the same
    figures = {
        "raw_text": _raw_copy(_fresh_pg(base), tuples, binary=False),
        "raw_binary": _raw_copy(_fresh_pg(base), tuples, binary=True),
    }
    with UsageLogger(url=_fresh_pg(base)) as logger:
        figures["ours_batch"] = len(rows) / _timed(
            lambda: [logger.log_many(rows[o : o + CHUNK]) for o in range(0, len(rows), CHUNK)]
        )
    with UsageLogger(url=_fresh_pg(base)) as logger:
        buffered = logger.buffered(max_pending=len(rows) + 1, batch_size=CHUNK)

        def through_buffer() -> None:
            for offset in range(0, len(rows), CHUNK):
                buffered.log_many(rows[offset : offset + CHUNK])
            buffered.close()

        figures["ours_buffered"] = len(rows) / _timed(through_buffer)
    return figures


# --- report ------------------------------------------------------------------------------


def _best(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: max(r[key] for r in rounds) for key in rounds[0]}


def _line(label: str, ours: float, base: float, base_label: str, target: float) -> str:
    ratio = ours / base
    mark = "✔" if ratio >= target else "✘"
    return (
        f"{label:<28} {ours:>10,.0f}/s  {base_label:<34} {base:>10,.0f}/s  "
        f"ratio {ratio:4.2f}  target ≥ {target:.1f} {mark}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000, help="rows per batched run")
    parser.add_argument("--single", type=int, default=5_000, help="rows of the log() run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (best kept)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args(argv)
    rows = make_rows(args.rows)
    lines = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            rounds = []
            for number in range(args.rounds):
                print(f"SQLite round {number + 1}/{args.rounds} …", file=sys.stderr)
                rounds.append(sqlite_round(Path(tmp), rows, args.single))
        best = _best(rounds)
        lines += [
            _line("SQLite log_many()", best["ours_batch"], best["raw_batch"],
                  "raw executemany, same table", TARGETS["sqlite_batch"]),
            _line("SQLite log()", best["ours_single"], best["raw_single"],
                  "raw autocommit INSERT per row", TARGETS["sqlite_single"]),
        ]  # fmt: skip
    if args.backend in ("postgres", "both"):
        base = _pg_base()
        rounds = []
        for number in range(args.rounds):
            print(f"PostgreSQL round {number + 1}/{args.rounds} …", file=sys.stderr)
            rounds.append(pg_round(base, rows))
        best = _best(rounds)
        raw = max(best["raw_text"], best["raw_binary"])
        kind = "binary" if best["raw_binary"] >= best["raw_text"] else "text"
        lines += [
            _line("PostgreSQL log_many()", best["ours_batch"], raw,
                  f"raw COPY ({kind}), same table", TARGETS["pg_batch"]),
            _line("PostgreSQL buffered", best["ours_buffered"], raw,
                  f"raw COPY ({kind}), same table", TARGETS["pg_buffered"]),
        ]  # fmt: skip
        lines.append(
            f"{'':<28} raw COPY text {best['raw_text']:,.0f}/s, binary {best['raw_binary']:,.0f}/s"
        )
    print(f"{args.rows:,} rows batched, {args.single:,} single; best of {args.rounds} rounds")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
