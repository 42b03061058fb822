"""Package shape, public API and code quality gates."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import afs.continuous
from tests.docs_examples import ROOT

SEED_NAMES = {
    "UsageLogger", "UsageRecord", "UsageDatabase", "TrainingDataGenerator",
    "DataGeneratorConfig", "GenerationResult", "RetrainTrigger", "TriggerConfig", "TriggerType",
    "TriggerResult", "AutoRetrainer", "ABTestManager", "ABTestConfig", "ABTestResult",
    "ModelVersion", "ModelStatus", "TrafficSplit", "ContinuousLearningLoop", "LoopConfig",
    "LoopStatus",
}  # fmt: skip


def test_operator_is_a_source_root_and_afs_a_namespace_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert not (ROOT / "operator" / "afs" / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")  # the standard library's, not ours


def test_public_api_exports_the_twenty_seed_names() -> None:
    assert set(afs.continuous.__all__) >= SEED_NAMES
    for name in afs.continuous.__all__:
        assert hasattr(afs.continuous, name), name


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],  # the whole repository, as `ruff check .` at its root
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
)
def test_code_quality_gate(command: list[str]) -> None:
    if shutil.which(command[0]) is None and not _module_available(command[0]):
        pytest.fail(
            f"{command[0]} is not installed; install the test extras: pip install -e '.[test]'"
        )
    done = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_the_pure_core_imports_nothing_that_does_io() -> None:
    """``core`` holds the decisions; stores, the Kubernetes client and the loop sit above
    it. An import from there would make the pure functions depend on I/O code."""
    import ast

    core = ROOT / "operator" / "afs" / "continuous" / "core"
    allowed = ("afs.continuous.core", "afs.continuous.config", "afs.continuous.errors",
               "afs.continuous.timeutil")  # fmt: skip
    found = []
    for path in sorted(core.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if module.startswith("afs.") and not module.startswith(allowed):
                found.append(f"{path.name}: {module}")
    assert found == []
