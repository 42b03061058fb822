"""Training outside Python: run a trainer command and read its JSON result.

Contract: the command gets ``{data_path}`` (the generated JSONL) and ``{output_dir}`` (a
fresh directory for its artefacts) substituted into its arguments, exits 0 on success,
and prints a JSON object as its last line of standard output, e.g.
``{"model_path": "out/model.bin", "metrics": {"loss": 0.3}, "model_name": "nayru-v2"}``.
Anything else is a failed retrain whose error carries the tail of standard error.
"""

from __future__ import annotations

import json
import shlex
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
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise TrainCommandError(f"train_command not found: {args[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TrainCommandError(f"train_command ran past {timeout_s:g}s and was stopped") from exc
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
