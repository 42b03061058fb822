"""The seed document's examples run as written (those whose features exist so far)."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs_examples import ROOT, code_blocks, section

SEED = ROOT / "docs" / "CONTINUOUS_LEARNING.md"


def _run(blocks: list[str], namespace: dict[str, object]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(SEED), "exec"), namespace)
    return out.getvalue()


@pytest.fixture
def in_tmp(tmp_path: Path, private_home: Path) -> Iterator[Path]:
    previous = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(previous)


def test_basic_logging_generation_and_statistics_run_as_written(
    in_tmp: Path, private_home: Path
) -> None:
    namespace: dict[str, object] = {}
    logging_blocks = code_blocks(section(SEED, "1. Basic Usage Logging"), "python")
    generation_blocks = code_blocks(section(SEED, "2. Generate Training Data"), "python")
    stats_blocks = code_blocks(section(SEED, "Get statistics"), "python")
    assert logging_blocks and generation_blocks and stats_blocks

    _run(logging_blocks, namespace)
    assert (private_home / ".context/training/continuous/usage.db").exists()

    output = _run(generation_blocks, namespace)
    assert output == "Generated 1 training samples\n"
    assert (in_tmp / "training_data.jsonl").exists()

    output = _run(stats_blocks, namespace)
    assert output == "Total records: 1\nFeedback rate: 100.0%\nAvg quality: 0.850\n"


def test_rehearsal_and_trigger_config_snippets_construct(in_tmp: Path) -> None:
    from afs.continuous import DataGeneratorConfig

    block = code_blocks(section(SEED, "Rehearsal Buffer Integration"), "python")[0]
    config = eval(block.strip(), {"DataGeneratorConfig": DataGeneratorConfig})
    assert config.include_existing_data is True
