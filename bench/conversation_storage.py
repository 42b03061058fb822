"""Conversations logged turn by turn: bytes stored per turn and records/s, ours beside a
baseline that stores each turn's whole conversation inline, in the same run.

Each chat has a system prompt and ``--turns`` user turns of ~60 words, each answered with
~120 words; every turn is logged as it happens (``log(messages=…)``, one call per turn),
so turn k carries the k turns before it. Ours stores each distinct prefix once (a chain of
nodes); the baseline is the same usage table (made by our migrations) with one more
column holding the turn's whole conversation as JSON, one autocommit INSERT per turn.
Storage is the SQLite file's pages in use after a checkpoint (the same measure for both).
Ours must grow linearly: the bytes per turn of the last chats are about those of the
first ones, where the baseline's grow with the turn number.

Usage: python bench/conversation_storage.py [--chats 10000] [--turns 20]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from afs.continuous import UsageLogger
from afs.continuous.records import RECORD_FIELDS, normalized_batch

SYSTEM = {"role": "system", "content": "You are nayru, a tutor for 65816 assembly. " * 8}


def _chat(rng: random.Random, words: list[str], turns: int) -> list[tuple[str, str]]:
    return [
        (" ".join(rng.choices(words, k=60)), " ".join(rng.choices(words, k=120)))
        for _ in range(turns)
    ]


def _used_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    return int((pages - free) * size)


def ours(path: Path, chats: list[list[tuple[str, str]]]) -> tuple[float, list[int]]:
    """Records/s, and the bytes used after each tenth of the chats."""
    marks, step = [], max(len(chats) // 10, 1)
    with UsageLogger(path) as logger:
        base = _used_bytes(path)
        start = time.perf_counter()
        for index, chat in enumerate(chats, 1):
            messages: list[dict[str, Any]] = [SYSTEM]
            for question, answer in chat:
                messages.append({"role": "user", "content": question})
                logger.log(None, answer, "nayru-v1", messages=messages)
                messages.append({"role": "assistant", "content": answer})
            if index % step == 0:
                marks.append(_used_bytes(path) - base)
        took = time.perf_counter() - start
    return sum(map(len, chats)) / took, marks


def inline(path: Path, chats: list[list[tuple[str, str]]]) -> tuple[float, list[int]]:
    """The baseline: each turn's whole conversation as JSON in the record's row."""
    with UsageLogger(path) as logger:  # our migrations: the same table, indexes, triggers
        logger.log("warm", "up", "m")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ALTER TABLE usage ADD COLUMN conversation_json TEXT")
    columns = ", ".join((*RECORD_FIELDS, "conversation_json"))
    insert = f"INSERT INTO usage ({columns}) VALUES ({', '.join('?' * (len(RECORD_FIELDS) + 1))})"
    base = _used_bytes(path)
    marks, step, turns, took = [], max(len(chats) // 10, 1), 0, 0.0
    for index, chat in enumerate(chats, 1):
        messages: list[dict[str, Any]] = [SYSTEM]
        for question, answer in chat:
            messages.append({"role": "user", "content": question})
            [record] = normalized_batch(
                [{"query": question, "response": answer, "model": "nayru-v1"}],
                now=datetime.now(UTC),
            )
            record.id = f"r{index}-{turns}"
            values = (*(getattr(record, f) for f in RECORD_FIELDS), json.dumps(messages))
            start = time.perf_counter()
            conn.execute(insert, values)
            took += time.perf_counter() - start
            turns += 1
            messages.append({"role": "assistant", "content": answer})
        if index % step == 0:
            marks.append(_used_bytes(path) - base)
    conn.close()
    return turns / took, marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args(argv)
    rng = random.Random(7)
    words = [f"w{i}" for i in range(3000)]
    chats = [_chat(rng, words, args.turns) for _ in range(args.chats)]
    turns = args.chats * args.turns
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{args.chats:,} chats of {args.turns} turns, logged turn by turn …", flush=True)
        our_rate, our_marks = ours(Path(tmp) / "ours.db", chats)
        base_rate, base_marks = inline(Path(tmp) / "inline.db", chats)
    print(f"ours    {our_marks[-1] / turns:10,.0f} bytes/turn  {our_rate:10,.0f} records/s "
          "(log(messages=…), one call per turn)")  # fmt: skip
    print(f"inline  {base_marks[-1] / turns:10,.0f} bytes/turn  {base_rate:10,.0f} rows/s "
          "(raw INSERT of the row plus its whole conversation)")  # fmt: skip
    ratio = base_marks[-1] / our_marks[-1]
    growth = [b - a for a, b in zip([0, *our_marks], our_marks, strict=False)]
    linear = max(growth) <= 1.25 * min(growth)
    print(
        f"storage: inline / ours = {ratio:.1f}x; ours per tenth of the chats "
        f"{min(growth):,}–{max(growth):,} bytes (linear: {'✔' if linear else '✘'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
