"""Training outside Python: run a trainer command and read its JSON result.

Contract: the command gets ``{data_path}`` (the generated JSONL) and ``{output_dir}`` (a
fresh directory for its artefacts) substituted into its arguments, exits 0 on success,
and prints a JSON object as its last line of standard output, e.g.
``{"model_path": "out/model.bin", "metrics": {"loss": 0.3}, "model_name": "nayru-v2"}``.
Anything else is a failed retrain whose error carries the tail of standard error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

from afs.continuous.errors import ContinuousError

_TAIL_CHARS = 2000


class TrainCommandError(ContinuousError):
    """The trainer command failed or did not report a result."""


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _TAIL_CHARS else "…" + text[-_TAIL_CHARS:]


def _run_in_own_group(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in a process group of its own, so that a timeout stops the trainer and
    everything it started (a shell's children would otherwise keep running, and keep the
    output pipes open so that waiting for them hangs)."""
    try:
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise TrainCommandError(f"train_command not found: {args[0]}") from exc
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise TrainCommandError(f"train_command ran past {timeout_s:g}s and was stopped") from exc
    except BaseException:  # interrupted: leave nothing behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def run_train_command(
    template: str, *, data_path: str | Path, output_dir: str | Path, timeout_s: float
) -> dict[str, Any]:
    """Run the trainer; return its JSON result or raise :class:`TrainCommandError`."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    try:
        parts = shlex.split(template)
    except ValueError as exc:
        raise TrainCommandError(f"train_command cannot be parsed: {exc}") from exc
    if not parts:
        raise TrainCommandError("train_command is empty")
    args = [
        part.replace("{data_path}", str(data_path)).replace("{output_dir}", str(output))
        for part in parts
    ]
    done = _run_in_own_group(args, timeout_s)
    if done.returncode != 0:
        raise TrainCommandError(
            f"train_command exited with status {done.returncode}; stderr: {_tail(done.stderr)}"
        )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise TrainCommandError(
            "train_command did not print a JSON object as its last line; "
            f"stdout: {_tail(done.stdout)}; stderr: {_tail(done.stderr)}"
        )
    return result
