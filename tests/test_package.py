"""Package shape, public API and code quality gates."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import afs.continuous
from tests.docs_examples import ROOT

BUILT_SO_FAR = {
    "UsageLogger",
    "UsageRecord",
    "UsageDatabase",
    "TrainingDataGenerator",
    "DataGeneratorConfig",
    "GenerationResult",
}


def test_operator_is_a_source_root_and_afs_a_namespace_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert not (ROOT / "operator" / "afs" / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")  # the standard library's, not ours


def test_public_api_exports_the_seed_names_built_so_far() -> None:
    assert set(afs.continuous.__all__) >= BUILT_SO_FAR
    for name in afs.continuous.__all__:
        assert hasattr(afs.continuous, name), name


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "operator", "tests", "bench"],
        ["ruff", "format", "--check", "operator", "tests", "bench"],
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
