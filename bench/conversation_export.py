"""Export of conversation records: records/s and peak memory, beside an export of as many
single-exchange records (same texts, same table) in the same run, at two sizes.

Chats of ``--turns`` turns are logged turn by turn into SQLite (``log_many`` per chat, the
conversation growing), then exported as ``openai`` lines. Peak memory is the Python heap's
peak during the export (tracemalloc), which must stay flat: the same at a tenth of the
records as at all of them, since records stream and the conversation nodes read back are
held in a bounded cache.

Usage: python bench/conversation_export.py [--records 100000] [--turns 20]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger

SYSTEM = {"role": "system", "content": "You are nayru, a tutor for 65816 assembly."}
CONFIG: dict[str, Any] = {
    "min_quality_score": 0.0,
    "min_user_feedback": None,
    "format_type": "openai",
}


def _fill(path: Path, records: int, turns: int, *, conversations: bool) -> None:
    rng = random.Random(7)
    words = [f"w{i}" for i in range(3000)]
    with UsageLogger(path) as logger:
        for _chat in range(records // turns):
            messages: list[dict[str, Any]] = [SYSTEM]
            batch = []
            for _turn in range(turns):
                question = " ".join(rng.choices(words, k=30))
                answer = " ".join(rng.choices(words, k=60))
                messages.append({"role": "user", "content": question})
                if conversations:
                    batch.append({"response": answer, "model": "m", "messages": list(messages)})
                else:
                    batch.append({"query": question, "response": answer, "model": "m"})
                messages.append({"role": "assistant", "content": answer})
            logger.log_many(batch)


def _export(path: Path, out: Path) -> tuple[float, int, int]:
    """records/s, peak heap bytes, lines written."""
    with UsageLogger(path) as logger:
        generator = TrainingDataGenerator(logger, DataGeneratorConfig(**CONFIG))
        tracemalloc.start()
        start = time.perf_counter()
        result = generator.generate(out)
        took = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result.final_count / took, peak, result.final_count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (args.records // 10, args.records):
            for conversations in (True, False):
                db = Path(tmp) / f"{size}-{conversations}.db"
                print(f"filling {size:,} {'conversation' if conversations else 'single'} "
                      "records …", flush=True)  # fmt: skip
                _fill(db, size, args.turns, conversations=conversations)
                rate, peak, lines = _export(db, Path(tmp) / "out.jsonl")
                rows.append((size, conversations, rate, peak, lines))
    for size, conversations, rate, peak, lines in rows:
        kind = "conversations" if conversations else "single turns "
        print(f"{kind} {size:>9,} records: {rate:>9,.0f} records/s exported, peak heap "
              f"{peak / 2**20:6.1f} MiB, {lines:,} lines")  # fmt: skip
    small, large = rows[0][3], rows[2][3]
    flat = large <= 1.5 * small + 4 * 2**20
    print(f"conversation export peak heap at {args.records // 10:,} vs {args.records:,} "
          f"records: {small / 2**20:.1f} vs {large / 2**20:.1f} MiB (flat: "
          f"{'✔' if flat else '✘'}); records/s vs single turns: "
          f"{rows[2][2] / rows[3][2]:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
