"""Does `afs-continuous import` need memory in proportion to the file it reads?

Each figure is a child process's peak resident set (ru_maxrss), less that of a child that
only starts the same interpreter and imports the CLI (the idle baseline). The baseline
for the work is a child that reads and parses the same file line by line without writing
anything: what streaming alone costs. The import holds one chunk of records, SQLite's
page cache (up to 32 MiB, `cache_size`: full once the database passes that size, hence
files of 56 and 112 MB by default) and the ids it returns (~70 bytes a record). The
figure that matters is the growth: extra peak per extra MiB of file, between two files
(it was ~3.6 MiB per MiB when the batch was held whole: 28 MB file, 100 MiB above the
interpreter).

    python bench/import_memory.py [--mb 56 112] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_GROWTH = 0.2  # MiB of extra peak per MiB of extra file

_PEAK = "import resource, sys; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
IDLE = f"import afs.continuous.cli\n{_PEAK}"
PARSE = f"""
import json, sys
import afs.continuous.cli
with open(sys.argv[1], encoding="utf-8") as lines:
    for line in lines:
        json.loads(line)
{_PEAK}
"""
IMPORT = f"""
import sys
from afs.continuous.cli import main
code = main(["import", sys.argv[1], "--db", sys.argv[2]])
assert code == 0, code
{_PEAK}
"""


def write_file(path: Path, megabytes: float) -> int:
    rng = random.Random(7)
    words = [f"w{i}" for i in range(5000)]
    written = count = 0
    with path.open("w", encoding="utf-8") as out:
        while written < megabytes * 1e6:
            record = {
                "query": " ".join(rng.choices(words, k=rng.randint(5, 60))),
                "response": " ".join(rng.choices(words, k=rng.randint(20, 200))),
                "model": rng.choice(["nayru-v1", "nayru-v2"]),
                "quality_score": round(rng.random(), 3),
                "latency_ms": round(rng.uniform(50, 900), 1),
                "timestamp": f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z",
            }
            line = json.dumps(record) + "\n"
            out.write(line)
            written += len(line.encode())
            count += 1
    return count


def peak_kib(code: str, *args: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    )
    return int(done.stdout.strip().splitlines()[-1])


def measure(tmp: Path, megabytes: float, rounds: int) -> tuple[float, int, dict[str, float]]:
    source = tmp / f"usage-{megabytes:g}.jsonl"
    count = write_file(source, megabytes)
    best: dict[str, int] = {}
    for round_ in range(rounds):
        figures = {
            "idle": peak_kib(IDLE),
            "parse": peak_kib(PARSE, str(source)),
            "import": peak_kib(IMPORT, str(source), str(tmp / f"{megabytes:g}-{round_}.db")),
        }
        for name, kib in figures.items():
            best[name] = min(best.get(name, kib), kib)
    idle = best["idle"] / 1024
    above = {"idle": idle} | {k: best[k] / 1024 - idle for k in ("parse", "import")}
    return source.stat().st_size / 2**20, count, above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, nargs=2, default=[56.0, 112.0],
                        help="sizes of the two files (MB)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (best kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(Path(tmp), mb, args.rounds) for mb in sorted(args.mb)]
    print(
        f"best of {args.rounds} alternating rounds; idle interpreter {rows[0][2]['idle']:.0f} MiB"
    )
    print("file                       peak above idle: read + parse (baseline) | import (SQLite)")
    for size, count, above in rows:
        print(f"{size:6.1f} MiB, {count:7,} records   {above['parse']:24.1f} MiB |"
              f" {above['import']:8.1f} MiB")  # fmt: skip
    (small, _, a), (large, _, b) = rows
    growth = (b["import"] - a["import"]) / (large - small)
    baseline = (b["parse"] - a["parse"]) / (large - small)
    mark = "✔" if growth <= TARGET_GROWTH else "✘"
    print(f"growth per MiB of file: import {growth:.2f} MiB, baseline {baseline:.2f} MiB;"
          f" target ≤ {TARGET_GROWTH} {mark}")  # fmt: skip


if __name__ == "__main__":
    main()
