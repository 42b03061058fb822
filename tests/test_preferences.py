"""Preference exports: DPO pairs and KTO examples from thumbs, quality, corrections and
expert answers, in TRL's conversational formats (checked against the documented shapes:
https://huggingface.co/docs/trl/dataset_formats), on both stores and through a loop run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import (
    AutoRetrainer,
    DataGeneratorConfig,
    TrainingDataGenerator,
    TriggerConfig,
    UsageLogger,
)
from afs.continuous.cli import main
from tests.store.conftest import store_target as store_target


def _messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in value
        )
    )


def is_trl_conversational_preference(line: dict[str, Any]) -> bool:
    """TRL's conversational preference type: a prompt of messages, and the chosen and
    rejected completions as lists of (assistant) messages."""
    return (
        set(line) - {"metadata"} == {"prompt", "chosen", "rejected"}
        and _messages(line["prompt"])
        and all(_messages(line[k]) and line[k][-1]["role"] == "assistant"
                for k in ("chosen", "rejected"))
    )  # fmt: skip


def is_trl_conversational_unpaired_preference(line: dict[str, Any]) -> bool:
    """TRL's conversational unpaired preference type (KTO): prompt, completion, label."""
    return (
        set(line) - {"metadata"} == {"prompt", "completion", "label"}
        and _messages(line["prompt"])
        and _messages(line["completion"])
        and line["completion"][-1]["role"] == "assistant"
        and isinstance(line["label"], bool)
    )


def _log(target: str) -> dict[str, str]:
    """One prompt for each way a pair is made; the ids by name."""
    with UsageLogger(target) as logger:
        ids = {}
        ids["wrong"] = logger.log("How do I set 16-bit A?", "SEP #$20", "nayru-v1",
                                  user_feedback=-1)  # fmt: skip
        logger.record_feedback(ids["wrong"], -1, correction="REP #$20 clears the M flag.")
        ids["liked"] = logger.log("What is HDMA?", "Per-scanline DMA to PPU registers.",
                                  "nayru-v1", user_feedback=1)  # fmt: skip
        ids["disliked"] = logger.log("What is HDMA?", "A sound chip.", "nayru-v1",
                                     user_feedback=-1)  # fmt: skip
        ids["good"] = logger.log("What does XBA do?", "Swaps the two bytes of A.", "nayru-v1",
                                 quality_score=0.9)  # fmt: skip
        ids["poor"] = logger.log("What does XBA do?", "It exits.", "nayru-v1",
                                 quality_score=0.2)  # fmt: skip
        ids["failed"] = logger.log("What is mode 7?", "I'm not sure.", "nayru-v1",
                                   quality_score=0.1, user_feedback=-1)  # fmt: skip
        ids["expert"] = logger.log(
            "What is mode 7?", "A rotating, scaling background mode.", "expert-support",
            quality_score=1.0, user_feedback=1,
        )  # fmt: skip
        ids["chat"] = logger.log(
            None, "Use WAI to wait for NMI.", "nayru-v1", user_feedback=1,
            messages=[{"role": "system", "content": "You are nayru."},
                      {"role": "user", "content": "How do I wait for vblank?"}],
        )  # fmt: skip
        logger.log("Unrated", "no verdict", "nayru-v1")  # no verdict: left out
    return ids


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dpo_pairs_come_from_corrections_thumbs_quality_and_experts(
    store_target: str, tmp_path: Path
) -> None:
    ids = _log(store_target)
    config = DataGeneratorConfig(
        format_type="dpo", expert_models=("expert-support",), include_provenance=True
    )
    with UsageLogger(store_target) as logger:
        result = TrainingDataGenerator(logger, config).generate(tmp_path / "dpo.jsonl")
    lines = _lines(tmp_path / "dpo.jsonl")
    assert all(is_trl_conversational_preference(line) for line in lines)
    assert result.preference_sources == {"correction": 1, "expert": 1, "feedback": 1, "quality": 1}
    by_source = {line["metadata"]["source"]: line for line in lines}
    fix = by_source["correction"]
    assert fix["prompt"] == [{"role": "user", "content": "How do I set 16-bit A?"}]
    assert fix["chosen"] == [{"role": "assistant", "content": "REP #$20 clears the M flag."}]
    assert fix["rejected"] == [{"role": "assistant", "content": "SEP #$20"}]
    assert by_source["feedback"]["metadata"]["record_ids"] == [ids["liked"], ids["disliked"]]
    assert by_source["quality"]["chosen"][0]["content"] == "Swaps the two bytes of A."
    assert by_source["expert"]["metadata"]["record_ids"] == [ids["expert"], ids["failed"]]
    assert result.final_count == 4 and result.dataset_id is not None


def test_kto_examples_are_labelled_thumbs_and_corrections(
    store_target: str, tmp_path: Path
) -> None:
    _log(store_target)
    with UsageLogger(store_target) as logger:
        config = DataGeneratorConfig(format_type="kto", expert_models=("expert-support",))
        result = TrainingDataGenerator(logger, config).generate(tmp_path / "kto.jsonl")
    lines = _lines(tmp_path / "kto.jsonl")
    assert all(is_trl_conversational_unpaired_preference(line) for line in lines)
    labels = {(line["completion"][0]["content"], line["label"]) for line in lines}
    assert ("REP #$20 clears the M flag.", True) in labels  # the correction, desirable
    assert ("SEP #$20", False) in labels
    assert ("Use WAI to wait for NMI.", True) in labels
    chat = next(line for line in lines if line["completion"][0]["content"].startswith("Use WAI"))
    assert chat["prompt"][0] == {"role": "system", "content": "You are nayru."}
    assert "metadata" not in chat  # provenance only when asked
    assert result.preference_sources == {
        "correction:desirable": 1, "feedback:desirable": 2, "feedback:undesirable": 3,
    }  # fmt: skip


def test_the_same_records_give_the_same_file(tmp_path: Path) -> None:
    db = str(tmp_path / "u.db")
    _log(db)
    config = DataGeneratorConfig(format_type="dpo", expert_models=("expert-support",))
    with UsageLogger(db) as logger:
        TrainingDataGenerator(logger, config).generate(tmp_path / "a.jsonl")
        TrainingDataGenerator(logger, config).generate(tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_a_loop_run_exports_preferences_for_its_trainer(tmp_path: Path) -> None:
    db = str(tmp_path / "u.db")
    _log(db)
    trigger = TriggerConfig(min_new_samples=1, min_samples_for_retrain=1, min_quality_score=0.0)
    with UsageLogger(db) as logger:
        retrainer = AutoRetrainer(
            logger, trigger,
            DataGeneratorConfig(format_type="dpo", expert_models=("expert-support",)),
            tmp_path / "out",
        )  # fmt: skip
        seen: list[Path] = []

        def train(path: Path) -> dict[str, Any]:
            seen.append(path)
            return {"model_path": "m"}

        outcome = retrainer.check_and_retrain(train, force=True)
    assert outcome is not None and outcome["status"] == "completed"
    assert all(is_trl_conversational_preference(line) for line in _lines(seen[0]))


def test_the_command_line_writes_kto_and_reports_its_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "u.db")
    _log(db)
    out = tmp_path / "kto.jsonl"
    assert main(["--db", db, "export", str(out), "--format", "kto", "--provenance"]) == 0
    assert "kto lines by source: correction:desirable 1" in capsys.readouterr().out
    assert all("metadata" in line for line in _lines(out))
