"""The built image under the chart's security context: its commands answer, it names its
version and source, it holds no compiler, installer or test tooling, and it says what to
do where its defaults cannot work (HOME is not writable; no matplotlib)."""

from __future__ import annotations

import json

import pytest

from afs.continuous import __version__
from tests.image.conftest import Build
from tests.image.containers import IMAGE, TRAINER_IMAGE, ChartContainer, podman

#: the largest the image may grow before someone should look (1.03 GB when first built:
#: spaCy through Presidio, the kubernetes client and SciPy are most of it)
MAX_IMAGE_BYTES = 1_300_000_000


def _run(*arguments: str, component: str = "operator") -> tuple[int, str]:
    """The image's own entrypoint with ``arguments``, as the chart's ``component`` runs."""
    chart = ChartContainer.rendered(component)
    result = podman(
        "run", "--rm", "--network", "none", *chart.security_options(), "--tmpfs", "/tmp",
        IMAGE, *arguments, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--help"], "usage: afs-continuous"),
        (["--version"], f"afs-continuous {__version__}"),
        (["operator", "--help"], "Reconcile LearningLoops"),
        (["collect", "--help"], "Receive usage records and feedback over HTTP"),
        (["export", "--help"], "--held-out-only"),
    ],
    ids=["help", "version", "operator", "collect", "export"],
)
def test_the_commands_answer_under_the_chart_s_security_context(
    built: Build, arguments: list[str], expected: str
) -> None:
    code, output = _run(*arguments)
    assert code == 0, output
    assert expected in output


def test_the_image_names_its_version_source_and_licence(built: Build) -> None:
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", IMAGE).stdout)
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")


PROBE = """
import importlib.util, json, os, shutil
print(json.dumps({
    "tools": [t for t in ("gcc", "cc", "g++", "make", "pip", "pip3", "apt-get") if shutil.which(t)],
    "modules": [m for m in ("pip", "setuptools", "pytest", "hypothesis", "mypy", "ruff",
                            "kmock", "pgserver", "matplotlib")
                if importlib.util.find_spec(m) is not None],
    "caches": [p for p in ("/root/.cache", "/tmp/.cache", "/nonexistent")
               if os.path.exists(p)],
    "user": os.getuid(),
}))
"""


def test_no_compiler_installer_cache_or_test_dependency_is_inside(built: Build) -> None:
    chart = ChartContainer.rendered("operator")
    result = podman(
        "run", "--rm", "--network", "none", *chart.security_options(),
        "--entrypoint", "python", IMAGE, "-c", PROBE,
    )  # fmt: skip
    found = json.loads(result.stdout)
    # apt-get stays: it is Debian's, and nothing in the image runs it as root (UID 65532)
    assert found["tools"] in ([], ["apt-get"]), found
    assert found["modules"] == [] and found["caches"] == [] and found["user"] == 65532, found
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    print(f"image size: {size / 1e6:.0f} MB; built in {built.seconds:.0f} s")
    assert size < MAX_IMAGE_BYTES


def test_a_database_left_to_the_default_is_refused_saying_what_to_give(
    built: Build,
) -> None:
    """HOME is /nonexistent on a read-only root: nowhere to keep a SQLite file."""
    code, output = _run("log", "--query", "q", "--response", "r", "--model", "m")
    assert code == 2
    assert "it is the default under $HOME: give --db, or set AFS_DATABASE_URL" in output


def test_the_command_named_twice_is_explained(built: Build) -> None:
    code, output = _run("afs-continuous", "--help")
    assert code == 2 and "the image's entrypoint is afs-continuous already" in output


MAKE_A_TEST = """
from afs.continuous import UsageLogger
from afs.continuous.ab_test import ABTestManager
with UsageLogger("/tmp/u.db") as logger:
    manager = ABTestManager(logger, state_file="/tmp/ab.json")
    manager.set_champion("nayru-v1")
    manager.deploy_challenger("nayru-v2", "v2.bin")
"""


def test_a_report_says_it_needs_the_report_extra(built: Build) -> None:
    """The image leaves matplotlib out (the report is drawn where you run kubectl)."""
    chart = ChartContainer.rendered("operator")
    report = "afs-continuous abtest report --state /tmp/ab.json --db /tmp/u.db --out /tmp"
    result = podman(
        "run", "--rm", "--network", "none", *chart.security_options(), "--tmpfs", "/tmp",
        "--entrypoint", "sh", IMAGE, "-c", f"python -c '{MAKE_A_TEST}' && exec {report}",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "pip install 'afs-continuous[report]'" in result.stderr, result.stderr


def test_a_rebuild_leaves_no_untagged_image_behind(built: Build) -> None:
    """Each build replaces about a gigabyte; the script removes what its tags named."""
    if built.replaced is None:
        pytest.skip("no earlier build of these tags to replace on this machine")
    still_there = [
        i for i in built.replaced if podman("image", "exists", i, check=False).returncode == 0
    ]
    assert still_there == []


def test_the_trainer_image_is_built_on_this_one(built: Build) -> None:
    layers = podman("image", "inspect", "--format", "{{json .RootFS.Layers}}", IMAGE).stdout
    trainer = podman("image", "inspect", "--format", "{{json .RootFS.Layers}}", TRAINER_IMAGE)
    base, on_top = json.loads(layers), json.loads(trainer.stdout)
    assert on_top[: len(base)] == base and len(on_top) > len(base)
