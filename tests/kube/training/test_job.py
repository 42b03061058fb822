"""The training Job: deterministic, owned, and wired to the trainer contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from afs.continuous.cli import build_parser
from afs.continuous.cli.export import generator_config
from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec
from afs.continuous.kube.naming import dns_label, run_name
from afs.continuous.kube.training.base import LABEL_LOOP, LABEL_RUN
from afs.continuous.kube.training.export import export_command
from afs.continuous.kube.training.job import training_job
from tests.docs_examples import ROOT

SPEC = LearningLoopSpec.model_validate(
    yaml.safe_load(Path(ROOT / "examples/k8s/learningloop.yaml").read_text())["spec"]
)
SINCE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _job(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "loop": "nayru", "namespace": "ml", "uid": "uid-1", "spec": SPEC, "run": 3,
        "since": SINCE,
    }  # fmt: skip
    values.update(overrides)
    return training_job(**values)


def test_job_is_named_labelled_and_owned_by_the_loop() -> None:
    job = _job()
    meta = job["metadata"]
    assert meta["name"] == "nayru-run-3" == run_name("nayru", 3)
    assert meta["labels"] == {LABEL_LOOP: "nayru", LABEL_RUN: "3"}
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "LearningLoop", "nayru", "uid-1", True,
    )  # fmt: skip
    assert job["spec"]["template"]["metadata"]["labels"][LABEL_RUN] == "3"
    assert job == _job()  # the same inputs give the same Job


def test_trainer_gets_the_contract_environment_and_the_data_volume() -> None:
    pod = _job()["spec"]["template"]["spec"]
    trainer = pod["containers"][0]
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env == {
        "AFS_DATASET_PATH": "/data/dataset.jsonl",
        "AFS_OUTPUT_DIR": "/data/output",
        "AFS_RUN_ID": "nayru-run-3",
    }
    assert trainer["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "afs-data", "mountPath": "/data"} in trainer["volumeMounts"]
    assert pod["restartPolicy"] == "Never"
    assert {"name": "afs-data", "emptyDir": {"sizeLimit": "10Gi"}} in pod["volumes"]
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == 1  # the user's template kept


def test_init_container_exports_what_the_trigger_counted() -> None:
    exporter = _job()["spec"]["template"]["spec"]["initContainers"][0]
    assert exporter["command"] == export_command(SPEC, SINCE, dataset_id="ml/nayru-run-3")
    assert exporter["command"][:3] == ["afs-continuous", "export", "/data/dataset.jsonl"]
    assert exporter["command"][6:9] == ["--report", "/dev/termination-log", "--model=nayru-v1"]
    assert exporter["command"][-6:] == [
        "--since", "2026-11-20T12:00:00.000000Z", "--redact", "--redact-operator=replace",
        "--dataset-id=ml/nayru-run-3", "--model-version=ml/nayru-run-3",
    ]  # fmt: skip
    [env] = exporter["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "afs-usage-app", "key": "uri"}


@pytest.mark.parametrize(
    ("redaction", "flags"),
    [
        ({}, ["--redact", "--redact-operator=replace"]),
        ({"enabled": False}, []),
        (
            {"entities": ["EMAIL_ADDRESS", "JWT"], "operator": "drop"},
            ["--redact", "--redact-operator=drop", "--redact-entities=EMAIL_ADDRESS,JWT"],
        ),
    ],
)
def test_the_exporter_redacts_as_the_loop_says(
    redaction: dict[str, object], flags: list[str]
) -> None:
    dataset = {**SPEC.dataset.model_dump(by_alias=True), "redaction": redaction}
    spec = LearningLoopSpec.model_validate({**SPEC.model_dump(by_alias=True), "dataset": dataset})
    command = export_command(spec, None)
    assert [arg for arg in command if arg.startswith("--redact")] == flags
    args = build_parser().parse_args(command[1:])  # the real command line takes them
    config = generator_config(args)
    assert (config.redaction is not None) == bool(flags)


def test_a_hash_key_comes_from_its_secret() -> None:
    redaction = {"operator": "hash", "keySecretRef": {"name": "redaction", "key": "key"}}
    dataset = {**SPEC.dataset.model_dump(by_alias=True), "redaction": redaction}
    spec = LearningLoopSpec.model_validate({**SPEC.model_dump(by_alias=True), "dataset": dataset})
    job = training_job(loop="nayru", namespace="ml", uid="u", spec=spec, run=3, since=SINCE)
    exporter = job["spec"]["template"]["spec"]["initContainers"][0]
    key = {"name": "AFS_REDACTION_KEY",
           "valueFrom": {"secretKeyRef": {"name": "redaction", "key": "key"}}}  # fmt: skip
    assert key in exporter["env"]


@pytest.mark.parametrize(
    ("redaction", "message"),
    [
        ({"operator": "hash"}, "operator hash needs keySecretRef"),
        ({"keySecretRef": {"name": "s", "key": "k"}}, "keySecretRef is for operator hash"),
        ({"entities": ["PERSON"]}, "unknown entity type PERSON"),
        ({"entities": []}, "at least 1 item"),
        ({"mode": "strict"}, "mode"),
    ],
)
def test_a_bad_redaction_spec_is_refused(redaction: dict[str, object], message: str) -> None:
    dataset = {**SPEC.dataset.model_dump(by_alias=True), "redaction": redaction}
    with pytest.raises(ValueError, match=message):
        LearningLoopSpec.model_validate({**SPEC.model_dump(by_alias=True), "dataset": dataset})


def test_the_caller_template_is_not_modified() -> None:
    before = yaml.safe_dump(SPEC.training.template)
    _job()
    assert yaml.safe_dump(SPEC.training.template) == before


def test_job_limits_follow_the_spec() -> None:
    spec = _job()["spec"]
    limits = (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"])
    assert limits == (1, 21600, 86400)


def test_job_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(_job(), "1.30", strict=True)


def test_the_export_command_keeps_hostile_names_as_values() -> None:
    """Parsed by the real command line: a model named like an option stays the model."""
    model = {"name": "--db=/tmp/other.db", "expert": "-x"}
    spec = LearningLoopSpec.model_validate({**SPEC.model_dump(by_alias=True), "model": model})
    args = build_parser().parse_args(export_command(spec, SINCE)[1:])
    assert (args.model, args.expert, args.output) == ("--db=/tmp/other.db", "-x", SPEC.dataset.path)
    assert args.db != "/tmp/other.db"


def test_a_long_loop_name_gives_valid_label_values() -> None:
    """A loop's name may have 253 characters, a label value 63."""
    loop = "l" + "o" * 198 + "p"
    job = training_job(loop=loop, namespace="ml", uid="u", spec=SPEC, run=1, since=None)
    labels = job["metadata"]["labels"]
    value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    assert all(len(v) <= 63 and value.match(v) for v in labels.values()), labels
    assert job["metadata"]["name"] == run_name(loop, 1) and len(run_name(loop, 1)) <= 63


def test_a_template_without_containers_is_refused() -> None:
    spec = SPEC.model_copy(update={"training": SPEC.training.model_copy(update={"template": {}})})
    with pytest.raises(ValueError, match="containers"):
        _job(spec=spec)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nayru-run-3", "nayru-run-3"),
        ("Nayru_Run.3", None),
        ("x" * 80, None),
    ],
)
def test_dns_labels_are_valid_and_distinct(text: str, expected: str | None) -> None:
    label = dns_label(text)
    assert len(label) <= 63 and label == label.lower() and label[0] != "-" and label[-1] != "-"
    if expected is not None:
        assert label == expected
    else:
        assert label != dns_label(text + "y")


def _with_dataset(**dataset: Any) -> LearningLoopSpec:
    body = SPEC.model_dump(by_alias=True, exclude_none=True)
    body["dataset"] = {**body["dataset"], **dataset}
    return LearningLoopSpec.model_validate(body)


def test_a_job_with_a_claim_exports_into_the_run_s_directory_of_it() -> None:
    pod = _job(spec=_with_dataset(volumeClaim="shared-data"))["spec"]["template"]["spec"]
    assert {"name": "afs-data", "persistentVolumeClaim": {"claimName": "shared-data"}} in (
        pod["volumes"]
    )
    mount = {"name": "afs-data", "mountPath": "/data", "subPath": "nayru-run-3"}
    assert mount in pod["initContainers"][0]["volumeMounts"]
    assert mount in pod["containers"][0]["volumeMounts"]


def test_a_job_with_object_storage_also_uploads_the_data_set_it_reads_locally() -> None:
    spec = _with_dataset(storageUri="s3://ml/datasets", credentialsSecretRef={"name": "w"})
    pod = _job(spec=spec)["spec"]["template"]["spec"]
    exporter, trainer = pod["initContainers"][0], pod["containers"][0]
    assert "--upload=s3://ml/datasets/nayru-run-3/dataset.jsonl" in exporter["command"]
    assert exporter["envFrom"] == [{"secretRef": {"name": "w"}}]
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env["AFS_DATASET_PATH"] == "/data/dataset.jsonl"


@pytest.mark.parametrize(
    ("scoring", "flag"),
    [
        ({"scorer": "heuristic"}, "--score=heuristic"),
        ({}, "--score=discriminator"),
        ({"scorer": "judge", "judge": {"url": "http://vllm:8000/v1", "model": "meta/judge-8b",
                                       "apiKeySecretRef": {"name": "judge", "key": "token"}}},
         "--score=judge:http://vllm:8000/v1?model=meta%2Fjudge-8b&concurrency=4"),
    ],
)  # fmt: skip
def test_the_exporter_scores_first_as_the_loop_says(scoring: dict[str, Any], flag: str) -> None:
    spec = LearningLoopSpec.model_validate({**SPEC.model_dump(by_alias=True), "scoring": scoring})
    job = training_job(loop="nayru", namespace="ml", uid="u", spec=spec, run=3, since=SINCE)
    exporter = job["spec"]["template"]["spec"]["initContainers"][0]
    assert flag in exporter["command"]
    args = build_parser().parse_args(exporter["command"][1:])
    assert scorer_spec_ok(args.score)
    keyed = [e for e in exporter["env"] if e["name"] == "AFS_JUDGE_API_KEY"]
    assert bool(keyed) == ("judge" in scoring)


def scorer_spec_ok(spec: str) -> bool:
    """The spec parses as a scorer (a judge's needs no server to be built)."""
    from afs.continuous.scoring import scorer_from_spec

    if spec == "discriminator":
        return True  # trained by the exporter itself
    return callable(getattr(scorer_from_spec(spec), "score", None))


@pytest.mark.parametrize(
    "scoring", [{"scorer": "judge"}, {"scorer": "heuristic", "judge": {"url": "http://x/v1",
                                                                      "model": "m"}}],
)  # fmt: skip
def test_a_judge_and_its_scorer_come_together(scoring: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="scorer judge needs judge"):
        LearningLoopSpec.model_validate({**SPEC.model_dump(by_alias=True), "scoring": scoring})
