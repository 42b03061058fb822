"""The Dockerfile, checked without a container engine: statically, by rules chosen for
what the chart relies on, and by doing its install steps (the built wheel into a fresh
virtual environment) and running what the image runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from afs.continuous import __version__
from tests.docs_examples import ROOT

PARSED = DockerfileParser(str(ROOT / "Dockerfile"))
STAGES: list[list[dict[str, str]]] = []
for _instruction in PARSED.structure:
    if _instruction["instruction"] == "FROM":
        STAGES.append([])
    if STAGES:
        STAGES[-1].append(_instruction)
FINAL = STAGES[-1]


def _all(stage: list[dict[str, str]], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def test_two_stages_on_one_pinned_slim_base() -> None:
    """The wheel is built in a stage of its own; both stages use the same slim base, named
    by a tag (never ``latest``, never unpinned), so the copied environment's interpreter
    path exists in the final stage."""
    assert len(STAGES) == 2
    assert _all(STAGES[0], "FROM") == ["${PYTHON_IMAGE} AS build"]
    assert _all(FINAL, "FROM") == ["${PYTHON_IMAGE}"]
    (base,) = [v for v in _all(PARSED.structure, "ARG") if v.startswith("PYTHON_IMAGE=")]
    image = base.split("=", 1)[1]
    name, _, tag = image.partition(":")
    assert name == "python" and "slim" in tag and tag != "latest"


def test_the_final_stage_runs_as_the_charts_user_with_no_installer() -> None:
    """A numeric UID (Kubernetes' runAsNonRoot checks numbers) equal to the chart's
    runAsUser; pip and setuptools removed; nothing installed there (no compiler, no
    apt-get), only the built environment copied in (no ADD: it fetches and unpacks)."""
    chart = (ROOT / "charts/afs-continuous/templates/deployment.yaml").read_text()
    (user,) = _all(FINAL, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and f"runAsUser: {uid}" in chart
    runs = " ".join(_all(FINAL, "RUN"))
    assert "pip uninstall --yes pip setuptools" in runs
    assert "apt-get" not in runs and "pip install" not in runs
    assert _all(FINAL, "ADD") == [] and _all(STAGES[0], "ADD") == []
    assert _all(FINAL, "COPY") == ["--from=build /opt/afs /opt/afs"]


def test_the_entrypoint_is_the_command_in_exec_form() -> None:
    """Exec form, so signals (SIGTERM: the collector's flush) reach the process."""
    (entrypoint,) = _all(FINAL, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["afs-continuous"]


def test_pip_in_the_build_stage_keeps_no_cache_and_installs_only_the_built_wheels() -> None:
    runs = " ".join(_all(STAGES[0], "RUN"))
    assert runs.count("--no-cache-dir") == runs.count("pip wheel") + runs.count("pip install")
    assert "--no-index --find-links /wheels" in runs


def test_what_the_build_copies_exists_and_nothing_else_is_sent() -> None:
    copied = [v.split()[:-1] for v in _all(STAGES[0], "COPY")]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), source
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:4] == ["*", "!pyproject.toml", "!README.md", "!operator/"]


def test_the_chart_and_exporter_name_the_image_this_builds() -> None:
    chart = yaml.safe_load((ROOT / "charts/afs-continuous/Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts/afs-continuous/values.yaml").read_text())
    from afs.continuous.kube.training.export import DEFAULT_EXPORTER_IMAGE

    image = f"{values['image']['repository']}:{chart['appVersion']}"
    assert image == DEFAULT_EXPORTER_IMAGE == f"ghcr.io/afs-continuous/afs-continuous:{__version__}"
    assert f"docker build -t {image} ." in (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's install, here: the wheel built from this tree, installed into a fresh
    virtual environment. Its dependencies come from this environment's site-packages (a
    path line, which processes no .pth: this tree's editable install stays out), so the
    test needs no download of numpy and the rest."""
    tmp = tmp_path_factory.mktemp("image")
    wheels, venv = tmp / "wheels", tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
         str(wheels), str(ROOT)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("afs_continuous-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(cwd), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("AFS_DATABASE_URL", None)
    return subprocess.run(
        [str(venv / "bin" / "afs-continuous"), *args],
        capture_output=True, text=True, cwd=cwd, env=env, check=False,
    )  # fmt: skip


def test_the_installed_wheel_is_the_package_not_this_tree(installed: Path) -> None:
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import afs.continuous as a, pathlib; print(pathlib.Path(a.__file__).resolve())"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(installed)), where
    assert Path(where).with_name("demo_knowledge.json").exists()  # package data shipped


@pytest.mark.parametrize("args", [["--help"], ["operator", "--help"], ["collect", "--help"]])
def test_the_images_commands_answer(installed: Path, tmp_path: Path, args: list[str]) -> None:
    result = _run(installed, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_the_exporter_runs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    sample = ROOT / "examples" / "usage_sample.jsonl"
    db = tmp_path / "usage.db"
    assert _run(installed, "--db", str(db), "import", str(sample), cwd=tmp_path).returncode == 0
    result = _run(
        installed, "--db", str(db), "export", "train.jsonl", "--json", "--no-existing",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    count = json.loads(result.stdout)["final_count"]
    assert count > 0 and (tmp_path / "train.jsonl").read_text().count("\n") == count


@pytest.mark.parametrize(
    ("arguments", "code", "says"),
    [
        (["--help"], 0, "scripts/build_image.sh [--tag IMAGE]"),
        (["--bogus"], 2, "unknown option --bogus"),
        (["--tag"], 2, "--tag needs a value"),
    ],
)
def test_the_build_script_explains_itself_before_it_needs_any_tool(
    arguments: list[str], code: int, says: str
) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "build_image.sh"), *arguments],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == code
    assert says in result.stdout + result.stderr
