"""The CRDs are generated from the models, structural, committed, and accept the examples."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from afs.continuous.kube import crds
from afs.continuous.kube.api import v1alpha1
from tests.docs_examples import ROOT, code_blocks
from tests.kube.structural import pruned_fields, schema_of

EXAMPLES = sorted((ROOT / "examples" / "k8s").glob("*.yaml"))
FREE_FORM = {"template", "metrics", "evidence", "spec"}  # pod templates, numbers, a kind's spec


def test_committed_crds_match_the_models() -> None:
    rendered = crds.render()
    for name, text in rendered.items():
        committed = ROOT / "crds" / name
        assert committed.exists(), f"run: afs-continuous crds --out crds ({name} missing)"
        assert committed.read_text() == text, (
            f"crds/{name} is stale: afs-continuous crds --out crds"
        )
    assert sorted(p.name for p in (ROOT / "crds").glob("*.yaml")) == sorted(rendered)


def _walk(node: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += _walk(value, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found += _walk(node[key], f"{path}[{key}]")
    return found


@pytest.mark.parametrize("kind", v1alpha1.KINDS, ids=lambda k: k.kind)
def test_schemas_are_structural(kind: v1alpha1.Kind) -> None:
    schema = crds.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    for forbidden in ("$ref", "anyOf", "title", "$defs", "additionalProperties: true"):
        assert forbidden not in text
    for path, node in _walk(schema, kind.kind):
        assert "type" in node, f"{path} has no type"
        if "properties" in node:
            assert node["type"] == "object" and "additionalProperties" not in node, path
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert path.rsplit(".", 1)[-1] in FREE_FORM, f"{path} should not be free-form"


def test_crd_names_columns_and_status_subresource() -> None:
    loop = crds.crd(v1alpha1.KINDS[0])
    assert loop["metadata"]["name"] == "learningloops.continuous.afs.dev"
    assert loop["spec"]["names"]["shortNames"] == ["ll"]
    assert loop["spec"]["names"]["categories"] == ["afs"]
    version = loop["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Champion", "Challenger", "Last Trigger", "Age"]


@pytest.mark.parametrize(
    ("obj", "pruned"),
    [
        ({"metadata": {"annotations": {"kopf.zalando.org/x": "{}"}}}, []),
        ({"status": {"phase": "Idle", "kopf": {"progress": {}}}}, ["status.kopf"]),
        ({"status": {"conditions": [{"type": "Ready", "x": 1}]}}, ["status.conditions[0].x"]),
        ({"status": {"lastTrigger": {"metrics": {"anything": {"nested": 1}}}}}, []),
        ({"spec": {"training": {"template": {"spec": {"whatever": True}}}}}, []),
        ({"spec": {"modle": {"name": "x"}}}, ["spec.modle"]),
    ],
)  # fmt: skip
def test_pruning_check_finds_undeclared_fields(obj: dict[str, Any], pruned: list[str]) -> None:
    assert pruned_fields(obj, schema_of("LearningLoop")) == pruned


def _openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable`` → JSON Schema type lists, for jsonschema's Draft 4."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v) for k, v in node.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _validator(kind: str) -> jsonschema.Draft4Validator:
    spec = next(crds.crd(k) for k in v1alpha1.KINDS if k.kind == kind)
    schema = spec["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft4Validator(_openapi_to_jsonschema(copy.deepcopy(schema)))


DOC_MANIFESTS = [
    (f"{doc}#{i}", block)
    for doc in ("operator.md", "install.md")
    for i, block in enumerate(code_blocks((ROOT / "docs" / doc).read_text(), "yaml"))
    if v1alpha1.API_VERSION in block
]
MANIFESTS = [(p.name, p.read_text()) for p in EXAMPLES] + DOC_MANIFESTS


@pytest.mark.parametrize("text", [t for _, t in MANIFESTS], ids=[n for n, _ in MANIFESTS])
def test_examples_validate_against_the_crds_and_parse(text: str) -> None:
    manifest = yaml.safe_load(text)
    assert manifest["apiVersion"] == v1alpha1.API_VERSION
    errors = sorted(_validator(manifest["kind"]).iter_errors(manifest), key=str)
    assert errors == []
    kind = next(k for k in v1alpha1.KINDS if k.kind == manifest["kind"])
    kind.spec.model_validate(manifest["spec"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"checkInterval": "soon"}, "does not match"),
        ({"triggers": {"minNewSamples": -1}}, "less than the minimum"),
        ({"promotion": {"mode": "yolo"}}, "is not one of"),
        ({"model": {}}, "'name' is a required property"),
    ],
)
def test_invalid_specs_are_refused_by_the_schema(change: dict[str, Any], message: str) -> None:
    manifest = yaml.safe_load((ROOT / "examples/k8s/learningloop.yaml").read_text())
    manifest["spec"].update(change)
    errors = [str(e.message) for e in _validator("LearningLoop").iter_errors(manifest)]
    assert any(message in e for e in errors), errors
    with pytest.raises(ValueError):
        v1alpha1.LearningLoopSpec.model_validate(manifest["spec"])


def test_spec_sections_mirror_the_local_configs() -> None:
    """The operator decides with the same cores: every setting must map one to one."""
    from dataclasses import fields

    from afs.continuous.config import DataGeneratorConfig, TriggerConfig

    trigger = v1alpha1.TriggerSpec()
    assert set(v1alpha1.TriggerSpec.model_fields) == {f.name for f in fields(TriggerConfig)}
    assert trigger.to_config() == TriggerConfig()
    dataset = v1alpha1.DatasetSpec().to_config()
    generator_fields = {f.name for f in fields(DataGeneratorConfig)}
    assert set(v1alpha1.DatasetSpec.model_fields) - v1alpha1.DatasetSpec.WHERE <= generator_fields
    assert dataset.format_type == "chatml" and dataset.include_existing_data is False


def test_the_examples_tell_one_story() -> None:
    """The loop's run 3 made the ModelVersion that the ABTest puts against run 2 (the
    loop's own champion since run 2 was promoted; its spec names the first one, the
    install guide's), on the loop's route and with its database."""
    docs = {p.stem: yaml.safe_load(p.read_text()) for p in EXAMPLES}
    loop, version, test = docs["learningloop"], docs["modelversion"], docs["abtest"]
    name = loop["metadata"]["name"]
    assert version["spec"]["model"] == loop["spec"]["model"]["name"]
    assert version["metadata"]["name"] == f"{name}-run-{version['spec']['lineage']['run']}"
    assert version["spec"]["lineage"]["loop"] == name
    assert test["spec"]["challenger"]["modelVersion"] == version["metadata"]["name"]
    assert test["spec"]["champion"]["modelVersion"] == version["spec"]["lineage"]["parent"]
    assert test["spec"]["traffic"]["targetRef"] == loop["spec"]["promotion"]["traffic"]["targetRef"]
    assert test["spec"]["database"] == loop["spec"]["database"]
    assert {d["metadata"]["namespace"] for d in docs.values()} == {"ml"}


def test_crds_prints_one_stream_and_writes_files_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from afs.continuous.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    assert cli_main(["crds"]) == 0
    documents = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert [d["kind"] for d in documents] == ["CustomResourceDefinition"] * 3
    assert not (tmp_path / "crds").exists()  # nothing written where it ran
    assert cli_main(["crds", "--out", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").glob("*.yaml"))) == 3
    assert cli_main(["crds", "--check", "--out", str(tmp_path / "out")]) == 0


def test_the_examples_can_be_applied_together() -> None:
    """`kubectl apply -f examples/k8s/` must not overwrite one example with the next."""
    keys = []
    for path in EXAMPLES:
        manifest = yaml.safe_load(path.read_text())
        meta = manifest["metadata"]
        keys.append((manifest["kind"], meta.get("namespace"), meta["name"]))
    assert len(keys) == len(set(keys)), keys
