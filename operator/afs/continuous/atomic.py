"""Files replaced whole: written to a temporary file beside the target, renamed over it
only once complete. The temporary file's name carries the writer's process id, so the
next writer removes what a killed one left (its process is gone) at once, not a day later;
one whose name carries no id (an older version's) goes after a day."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

#: a leftover without a process id this old is removed
STALE_TEMP_SECONDS = 24 * 3600
_PID = re.compile(r"\.pid(\d+)\.")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporary files of ``target`` that no living writer owns; the removed."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    removed = []
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if not leftover.is_file():
                continue
            owner = _PID.search(leftover.name[len(target.name) + 1 :])
            stale = (not _alive(int(owner.group(1)))) if owner else (
                leftover.lstat().st_mtime < cutoff)  # fmt: skip
            if stale:
                leftover.unlink()
                removed.append(leftover)
    return removed


@contextmanager
def atomic_file(target: Path, *, buffering: int = -1) -> Iterator[IO[str]]:
    """A text file that replaces ``target`` when the block ends without an exception (and
    leaves it untouched otherwise)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.pid{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8", buffering=buffering) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
