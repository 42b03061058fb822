"""The trainer command of the local loop."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from afs.continuous.training import TrainCommandError, run_train_command


def test_a_timeout_stops_the_trainer_and_everything_it_started(tmp_path: Path) -> None:
    marker = f"{uuid.uuid4().int % 1000 + 1000}.{uuid.uuid4().int % 1000}"
    started = time.monotonic()
    with pytest.raises(TrainCommandError, match=r"ran past 0\.5s"):
        run_train_command(
            f'sh -c "sleep {marker}; echo done"', data_path=tmp_path / "d.jsonl",
            output_dir=tmp_path / "out", timeout_s=0.5,
        )  # fmt: skip
    assert time.monotonic() - started < 10  # not waiting for the shell's child
    assert _processes_running(f"sleep\0{marker}") == []


def _processes_running(command_line: str) -> list[str]:
    """Pids whose command line (NUL-separated, as /proc shows it) contains the text."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and command_line in (entry / "cmdline").read_text():
                found.append(entry.name)
        except OSError:
            continue
    return found


def test_a_trainer_that_finishes_reports_its_json(tmp_path: Path) -> None:
    result = run_train_command(
        """sh -c 'echo log line; echo "{\\"model_path\\": \\"{output_dir}/m\\"}"'""",
        data_path=tmp_path / "d.jsonl", output_dir=tmp_path / "out", timeout_s=30,
    )  # fmt: skip
    assert result == {"model_path": f"{tmp_path / 'out'}/m"}
