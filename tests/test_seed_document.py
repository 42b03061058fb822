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


def test_sections_one_to_five_and_loop_status_run_in_sequence(
    in_tmp: Path, private_home: Path
) -> None:
    """Sections 1-5 share names (``logger``…) as a reader running them in order would.

    Section 5 calls ``loop.run_loop`` ("Run indefinitely"); the test stops that loop once
    it has completed an iteration, as an operator would, and the rest of the section runs.
    """
    import threading
    import time

    namespace: dict[str, object] = {}
    for heading in ("1. Basic Usage Logging", "2. Generate Training Data"):
        _run(code_blocks(section(SEED, heading), "python"), namespace)

    output = _run(code_blocks(section(SEED, "3. Automatic Retraining"), "python"), namespace)
    assert output == ""  # one record: no trigger fires, and the example prints nothing
    assert namespace["result"] is None

    output = _run(code_blocks(section(SEED, "4. A/B Testing"), "python"), namespace)
    assert output == "Winner: inconclusive\nImprovement: 0.0%\n"
    manager = namespace["ab_test"]
    assert manager.champion.name == "nayru-v1"  # type: ignore[attr-defined]
    assert manager.challenger.name == "nayru-v2"  # type: ignore[attr-defined]

    errors: list[BaseException] = []

    def section_five() -> None:
        try:
            _run(
                code_blocks(section(SEED, "5. Full Continuous Learning Loop"), "python"), namespace
            )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=section_five)
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        loop = namespace.get("loop")
        if loop is not None and loop.status.last_check is not None:  # type: ignore[attr-defined]
            loop.stop()  # type: ignore[attr-defined]
            break
        time.sleep(0.01)
    worker.join(60)
    assert not worker.is_alive() and errors == []
    assert namespace["result"]["retrain_triggered"] is False  # type: ignore[index]

    output = _run(code_blocks(section(SEED, "Loop status"), "python"), namespace)
    assert output == "Total retrains: 0\nLast retrain: None\nChampion: nayru-v1\n"


@pytest.mark.parametrize(
    "heading",
    [
        "1. Sample Count Trigger",
        "2. Scheduled Trigger",
        "3. Quality Drop Trigger",
        "4. Error Rate Trigger",
    ],
)
def test_trigger_type_snippets_build_valid_configs(heading: str) -> None:
    from afs.continuous import TriggerConfig

    [block] = code_blocks(section(SEED, heading), "python")
    config = eval(block.strip(), {"TriggerConfig": TriggerConfig})
    assert isinstance(config, TriggerConfig)


def test_ab_metric_customisation_snippet() -> None:
    from afs.continuous import ABTestConfig

    [block] = code_blocks(section(SEED, "A/B Testing Metrics"), "python")
    config = eval(block.strip(), {"ABTestConfig": ABTestConfig})
    assert config.metric_weights["custom_metric"] == 0.4


def test_configuration_file_loads_with_the_seeds_keys(in_tmp: Path, private_home: Path) -> None:
    from afs.continuous.config import load_loop_config

    [block] = code_blocks(section(SEED, "Configuration file"), "json")
    (in_tmp / "config.json").write_text(block)
    config = load_loop_config(in_tmp / "config.json")
    assert config.db_path == private_home / ".context/training/continuous/usage.db"
    assert config.trigger_config.cooldown_hours == 24
    assert config.ab_test_config.min_duration_hours == 48


def test_running_the_main_loop_commands_work_as_written(in_tmp: Path, private_home: Path) -> None:
    """The four commands of "Running the Main Loop"; the daemons are stopped with SIGTERM
    after their first check, and must exit cleanly."""
    import signal
    import subprocess
    import sys

    [config_block] = code_blocks(section(SEED, "Configuration file"), "json")
    (in_tmp / "config.json").write_text(config_block)
    (in_tmp / "scripts").mkdir()
    (in_tmp / "scripts" / "continuous_loop.py").write_text(
        (ROOT / "scripts" / "continuous_loop.py").read_text()
    )
    [block] = code_blocks(section(SEED, "As a daemon"), "bash")
    commands = [line for line in block.splitlines() if line.startswith("python ")]
    assert len(commands) == 4
    from afs.continuous import UsageLogger

    with UsageLogger() as logger:  # the default database: enough for the forced retrain
        for i in range(120):
            logger.log(f"question {i}", f"answer {i}", "m", quality_score=0.9,
                             user_feedback=1)  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for command in commands:
        argv = [sys.executable, *command.split()[1:]]
        if "--status" in command or "--trigger" in command:
            done = subprocess.run(argv, cwd=in_tmp, env=env, capture_output=True, text=True,
                                  timeout=120)  # fmt: skip
            assert done.returncode == 0, done.stderr
            continue
        proc = subprocess.Popen(argv, cwd=in_tmp, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None
        first = proc.stdout.readline()  # one line per completed check
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "retrain" in first
