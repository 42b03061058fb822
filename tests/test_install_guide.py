"""docs/install.md, checked where it can be here: the database Secret the loop names is
the one CloudNativePG makes, the chart values render valid objects, the trainer runs as
the guide runs it and reports what the operator accepts, and every command names what
exists."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from afs.continuous.kube.planning import parse_termination_message
from tests.docs_examples import ROOT, code_blocks, section
from tests.kube.test_chart import _render

GUIDE = ROOT / "docs" / "install.md"


def _commands(heading: str) -> str:
    """The section's shell commands, continuation lines joined."""
    text = "\n".join(code_blocks(section(GUIDE, heading), "bash"))
    return re.sub(r"\\\n\s*", "", text)


def _yaml(heading: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(block) for block in code_blocks(section(GUIDE, heading), "yaml")]


def test_the_loop_reads_the_secret_the_database_section_makes() -> None:
    (cluster,) = _yaml("1. PostgreSQL")
    loop = next(m for m in _yaml("4. The champion and the loop") if m["kind"] == "LearningLoop")
    ref = loop["spec"]["database"]["urlSecretRef"]
    # CloudNativePG's application Secret: <cluster>-app, the URL under "uri"
    assert (ref["name"], ref["key"]) == (f"{cluster['metadata']['name']}-app", "uri")
    assert cluster["metadata"]["namespace"] == loop["metadata"]["namespace"]
    commands = _commands("1. PostgreSQL")
    assert (
        f"secret generic {ref['name']}" in commands and f"--from-literal={ref['key']}=" in commands
    )


def test_the_champion_the_loop_names_is_the_version_the_guide_creates() -> None:
    manifests = _yaml("4. The champion and the loop")
    version = next(m for m in manifests if m["kind"] == "ModelVersion")
    loop = next(m for m in manifests if m["kind"] == "LearningLoop")
    assert loop["spec"]["promotion"]["champion"] == version["metadata"]["name"]
    assert loop["spec"]["model"]["name"] == version["metadata"]["name"]


def test_the_chart_values_render_valid_objects_with_the_secrets_the_commands_make() -> None:
    (values,) = _yaml("2. The operator and the collector")
    documents = _render(values)
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "PrometheusRule", "ConfigMap", "ServiceMonitor", "NetworkPolicy"} <= kinds
    for document in documents:
        if document["kind"] not in ("PrometheusRule", "ServiceMonitor"):  # operator CRDs
            kubernetes_validate.validate(document, "1.30", strict=True)
    commands = _commands("2. The operator and the collector")
    collector = values["collector"]
    for ref in (collector["database"]["urlSecretRef"], collector["token"]["secretRef"]):
        assert f"secret generic {ref['name']} --from-literal={ref['key']}=" in commands


def test_the_trainer_runs_as_the_guide_runs_it(tmp_path: Path) -> None:
    block = code_blocks(section(GUIDE, "3. A trainer"), "bash")[0]
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    env.pop("AFS_DATABASE_URL", None)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = parse_termination_message((tmp_path / "report.json").read_text())
    assert report.model_uri.endswith("/out/nayru-run-1/model.json")
    assert Path(report.model_uri.removeprefix("file://")).is_file()
    assert report.metrics["train_examples"] > 0


def test_the_trainer_refuses_to_run_without_the_contract(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFS_")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "trainer" / "train.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "AFS_DATASET_PATH is not set" in result.stderr


def test_the_commands_name_what_exists() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for path in re.findall(r"\b((?:examples|charts|manifests)/[\w./-]+)", text):
        assert (ROOT / path.rstrip(".")).exists(), path
    for command in ("abtest list", "abtest promote", "db retention"):
        assert command in text


def test_every_example_reads_the_secret_the_guide_makes() -> None:
    """One convention: the loops and tests in examples/ and the guides read the Secret the
    install guide creates in ml (CloudNativePG's ``afs-usage-app``, key ``uri``)."""
    import yaml

    documents = [
        yaml.safe_load(p.read_text()) for p in sorted((ROOT / "examples" / "k8s").glob("*.yaml"))
    ]
    for doc in ("operator.md", "install.md"):
        documents += [yaml.safe_load(block) for block in
                      code_blocks((ROOT / "docs" / doc).read_text(), "yaml")
                      if "urlSecretRef" in block and "apiVersion" in block]  # fmt: skip
    refs = [d["spec"]["database"]["urlSecretRef"] for d in documents
            if (d.get("spec") or {}).get("database")]  # fmt: skip
    assert refs and all(ref == {"name": "afs-usage-app", "key": "uri"} for ref in refs), refs


def test_the_example_loop_names_the_champion_the_guide_creates() -> None:
    import yaml

    version = next(m for m in _yaml("4. The champion and the loop") if m["kind"] == "ModelVersion")
    example = yaml.safe_load((ROOT / "examples" / "k8s" / "learningloop.yaml").read_text())
    assert example["spec"]["promotion"]["champion"] == version["metadata"]["name"]


def test_the_image_section_installs_what_ci_installs_and_runs_the_script_the_tests_run() -> None:
    """The packages the guide names are those CI installs for the image tests, and the
    command it gives is the script those tests build with."""
    commands = _commands("The image, without Docker")
    named = set(re.search(r"apt-get install -y ([\w\s-]+)\n", commands)[1].split())  # type: ignore[index]
    ci = (ROOT / ".ci" / "run").read_text()
    installed = set(re.search(r'packages="([^"]+)"', ci)[1].split())  # type: ignore[index]
    assert named == installed
    assert "scripts/build_image.sh\n" in commands
    assert (ROOT / "scripts" / "build_image.sh").stat().st_mode & 0o111
