"""Files replaced whole leave nothing behind: the temporary file of a writer killed with
SIGKILL is removed by the next writer of the same file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from afs.continuous import TrainingDataGenerator, UsageLogger
from afs.continuous.atomic import STALE_TEMP_SECONDS, atomic_file, remove_stale_temporaries

WRITER = """
import sys, time
from pathlib import Path
from afs.continuous.atomic import atomic_file
with atomic_file(Path(sys.argv[1])) as handle:
    handle.write("half of a file")
    handle.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def _killed_writer(target: Path) -> list[Path]:
    """A writer of ``target`` killed with SIGKILL mid-write; the temporary files it left."""
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "writing"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


def test_an_export_removes_what_a_killed_export_left(tmp_path: Path) -> None:
    target = tmp_path / "train.jsonl"
    left = _killed_writer(target)
    assert len(left) == 1 and not target.exists()
    with UsageLogger(tmp_path / "u.db") as logger:
        TrainingDataGenerator(logger).generate(target)
    assert target.exists()
    assert list(tmp_path.glob(".train.jsonl.*.tmp")) == []


def test_a_living_writer_s_file_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    with atomic_file(target) as handle:
        handle.write("{}")
        [mine] = tmp_path.glob(".state.json.*.tmp")
        assert remove_stale_temporaries(target) == []  # our own, still being written
        assert mine.exists()
    assert target.read_text() == "{}"


def test_an_older_version_s_leftover_goes_after_a_day(tmp_path: Path) -> None:
    target = tmp_path / "train.jsonl"
    fresh, old = tmp_path / ".train.jsonl.ab12cd.tmp", tmp_path / ".train.jsonl.ef34gh.tmp"
    fresh.write_text("x")
    old.write_text("x")
    day_ago = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(old, (day_ago, day_ago))
    assert remove_stale_temporaries(target) == [old]
    assert fresh.exists()
