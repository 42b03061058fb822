"""Exports with redaction: the labelled corpus exported with ``--redact`` holds none of
its planted values, on both stores; the report counts what was found."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger
from afs.continuous.cli import main
from afs.continuous.privacy import DEFAULT_ENTITIES, RedactionConfig
from tests.privacy_corpus import planted

RECALL_TARGET = 0.99


def _log_corpus(target: str) -> list[tuple[str, str]]:
    """The corpus as records: half as single exchanges, half as a conversation's last
    turn (the value in an earlier user message and in the response)."""
    items = list(planted(seed=3, per_type=40))
    records: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if index % 2:
            records.append({"query": item.text, "response": "Thanks, noted.", "model": "m"})
        else:
            records.append({
                "messages": [
                    {"role": "system", "content": "You are a support assistant."},
                    {"role": "user", "content": item.text},
                    {"role": "assistant", "content": "Could you say more?"},
                    {"role": "user", "content": "That is all I have."},
                ],
                "response": f"I have noted: {item.text}",
                "model": "m",
            })  # fmt: skip
    for record in records:
        record |= {"quality_score": 0.9, "user_feedback": 1}
    with UsageLogger(target) as logger:
        logger.log_many(records)
    return [(item.entity, item.value) for item in items]


def test_an_export_with_redact_holds_none_of_the_planted_values(
    store_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = _log_corpus(store_target)
    out = tmp_path / "train.jsonl"
    assert main(["--db", store_target, "--json", "export", str(out), "--redact",
                 "--format", "openai"]) == 0  # fmt: skip
    exported = out.read_text(encoding="utf-8")
    total, caught = Counter[str](), Counter[str]()
    for entity, value in values:
        total[entity] += 1
        caught[entity] += value not in exported and json.dumps(value)[1:-1] not in exported
    recall = {entity: caught[entity] / total[entity] for entity in total}
    assert set(recall) == set(DEFAULT_ENTITIES)
    assert min(recall.values()) >= RECALL_TARGET, recall
    result = json.loads(capsys.readouterr().out)
    report = result["redaction"]
    assert report["records_redacted"] == result["final_count"]  # each held a value
    assert set(report["entities"]) == set(DEFAULT_ENTITIES)


def test_without_redact_the_values_are_exported_as_logged(tmp_path: Path) -> None:
    db = str(tmp_path / "u.db")
    values = _log_corpus(db)
    out = tmp_path / "train.jsonl"
    assert main(["--db", db, "export", str(out), "--format", "openai"]) == 0
    exported = out.read_text(encoding="utf-8")
    assert sum(value in exported or json.dumps(value)[1:-1] in exported
               for _, value in values) == len(values)  # fmt: skip


def test_drop_leaves_out_the_samples_with_findings(tmp_path: Path) -> None:
    with UsageLogger(tmp_path / "u.db") as logger:
        logger.log("reach me at anna@example.com", "ok", "m", quality_score=0.9, user_feedback=1)
        logger.log("what is LDA?", "load A", "m", quality_score=0.9, user_feedback=1)
        config = DataGeneratorConfig(redaction=RedactionConfig(operator="drop"))
        result = TrainingDataGenerator(logger, config).generate(tmp_path / "out.jsonl")
    assert result.final_count == 1
    assert result.redaction is not None and result.redaction["records_dropped"] == 1
    assert "anna" not in (tmp_path / "out.jsonl").read_text()


def test_rehearsal_samples_are_redacted_too(tmp_path: Path) -> None:
    buffer = tmp_path / "buffer.jsonl"
    line = {"messages": [{"role": "user", "content": "my card is 4111 1111 1111 1111"},
                         {"role": "assistant", "content": "please do not share it"}]}  # fmt: skip
    buffer.write_text(json.dumps(line) + "\n", encoding="utf-8")
    with UsageLogger(tmp_path / "u.db") as logger:
        config = DataGeneratorConfig(existing_data_path=buffer, redaction=RedactionConfig())
        result = TrainingDataGenerator(logger, config).generate(tmp_path / "out.jsonl")
    assert result.existing_samples == 1
    assert "<CREDIT_CARD>" in (tmp_path / "out.jsonl").read_text()


def test_redaction_in_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "export.yaml"
    config.write_text("redaction:\n  entities: [EMAIL_ADDRESS]\nmin_quality_score: 0.0\n")
    with UsageLogger(tmp_path / "u.db") as logger:
        logger.log("anna@example.com 4111 1111 1111 1111", "ok", "m", user_feedback=1)
    out = tmp_path / "out.jsonl"
    assert main(["--db", str(tmp_path / "u.db"), "export", str(out), "--config", str(config)]) == 0
    assert "<EMAIL_ADDRESS> 4111 1111 1111 1111" in out.read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--redact-entities", "EMAIL,PHONE_NUMBER"], "unknown entity type EMAIL"),
        (["--redact-entities", " , "], "names no entity type"),
        (["--redact-operator", "hash"], "AFS_REDACTION_KEY (not set)"),
        (["--redact-operator", "mask"], "invalid choice: 'mask'"),
    ],
)
def test_bad_redaction_flags_are_refused_before_anything_is_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    message: str,
) -> None:
    db = tmp_path / "u.db"
    with UsageLogger(db) as logger:
        logger.log("q", "r", "m", quality_score=0.9, user_feedback=1)
    out = tmp_path / "out.jsonl"
    monkeypatch.delenv("AFS_REDACTION_KEY", raising=False)
    try:
        code = main(["--db", str(db), "export", str(out), *flags])
    except SystemExit as exit_info:  # argparse refuses a choice itself
        code = int(exit_info.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
