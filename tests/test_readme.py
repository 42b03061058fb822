"""Every example in README.md runs, as written."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs_examples import ROOT, code_blocks
from tests.postgres_server import fresh_schema

README = ROOT / "README.md"
_SETUP_PREFIXES = ("python3 -m venv", ". .venv/bin/activate", "pip install", "pytest")


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    previous = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(previous)


def _shell_commands(block: str) -> list[str]:
    """The commands of a block, minus environment set-up (venv, pip, the test run)."""
    commands = []
    for line in block.strip().splitlines():
        parts = [p.strip() for p in line.split(" && ")]
        commands += [p for p in parts if p and not p.startswith(_SETUP_PREFIXES)]
    return commands


def test_readme_opens_with_the_two_commands() -> None:
    blocks = code_blocks(README.read_text(), "bash")
    main_job, tests = blocks[0], blocks[1]
    assert "pip install ." in main_job and main_job.strip().endswith("afs-continuous demo")
    assert tests.strip() == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest"
    )
    assert tests.strip() in (ROOT / ".ci" / "run").read_text()


@pytest.fixture
def postgres_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The README's PostgreSQL examples read AFS_DATABASE_URL; point it at a fresh schema."""
    with fresh_schema() as url:
        monkeypatch.setenv("AFS_DATABASE_URL", url)
        yield url


def test_python_examples_run_in_order(workdir: Path, postgres_env: str) -> None:
    outputs = []
    for block in code_blocks(README.read_text(), "python"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), {})
        outputs.append(out.getvalue())
    assert outputs[0] == "1 1 0.90\n"
    assert outputs[1] == "1000\n"
    assert outputs[2] == "What does SEP #$20 do? 4 lookup_opcode\n"  # the conversation
    final_count, _filtered, _duplicates = map(int, outputs[3].split())
    assert final_count == 1  # the one record with positive feedback and quality 0.9
    assert outputs[4] == "{'CREDIT_CARD': 1, 'EMAIL_ADDRESS': 1}\n"  # redacted
    assert outputs[5] == "completed nayru-v2\nTrue\n"
    assert outputs[6] == "0\n"  # the PostgreSQL example, on an empty database


def test_shell_examples_run_in_order(workdir: Path, postgres_env: str) -> None:
    blocks = code_blocks(README.read_text(), "bash")
    shutil.copytree(ROOT / "scripts", workdir / "scripts")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    outputs = []
    for index, block in enumerate(blocks):
        if index == 1:
            continue  # the test command itself
        for command in _shell_commands(block):
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
    assert "PROMOTED:" in outputs[0]  # the demo
    assert (workdir / "training_data.jsonl").read_text().count("\n") > 0


def test_the_loop_example_runs_again(workdir: Path) -> None:
    """Run twice in one place, as a reader trying it again would."""
    block = next(b for b in code_blocks(README.read_text(), "python") if "run_iteration" in b)
    for _ in range(2):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), {})
        assert out.getvalue() == "completed nayru-v2\nTrue\n"
