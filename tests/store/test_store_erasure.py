"""Data sets and erasure, the same on both stores: membership recorded at export, a
user's records erased with the conversation messages only they used, statistics kept
true, and lineage answered after the records are gone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger
from afs.continuous.cli import main
from afs.continuous.privacy.membership import member_count
from afs.continuous.store import UsageStore

SYSTEM = {"role": "system", "content": "You are the support assistant."}


def _chat(user: str, text: str, key: str) -> dict[str, object]:
    return {
        "messages": [SYSTEM, {"role": "user", "content": f"{user}: {text}"}],
        "response": f"answer for {user}", "model": "m", "quality_score": 0.9,
        "user_feedback": 1, "assignment_key": key,
    }  # fmt: skip


@pytest.fixture
def logged(store_target: str) -> UsageLogger:
    logger = UsageLogger(store_target)
    logger.log_many([
        _chat("anna", "my order is late", "user-anna"),
        _chat("anna", "and the invoice is wrong", "user-anna"),
        _chat("bob", "how do I reset my password?", "user-bob"),
        {"query": "single turn from anna", "response": "ok", "model": "m",
         "quality_score": 0.9, "user_feedback": 1, "assignment_key": "user-anna"},
    ])  # fmt: skip
    return logger


def _node_count(store: UsageStore) -> int:
    conn = getattr(store, "_conn", None)
    if conn is not None:
        return int(conn.execute("SELECT count(*) FROM conversation_nodes").fetchone()[0])
    with store.pool.connection() as pg:  # type: ignore[attr-defined]
        row = pg.execute("SELECT count(*) FROM conversation_nodes").fetchone()
        return int(row[0])


def test_an_export_records_its_members_and_what_trained_on_it(
    logged: UsageLogger, tmp_path: Path
) -> None:
    generator = TrainingDataGenerator(logged, DataGeneratorConfig())
    result = generator.generate(tmp_path / "a.jsonl", dataset_id="ds-a", model_version="m-v2")
    (entry,) = list(logged.store.iter_datasets())
    assert (entry.dataset_id, entry.model_version, entry.record_count) == ("ds-a", "m-v2", 4)
    assert member_count(entry.members) == 4 and entry.sha256 == result.sha256
    assert logged.store.label_dataset("ds-a", "m-v3")
    assert not logged.store.label_dataset("ds-missing", "m-v3")
    assert next(iter(logged.store.iter_datasets())).model_version == "m-v3"


def test_an_export_run_again_under_its_id_replaces_its_record(
    logged: UsageLogger, tmp_path: Path
) -> None:
    generator = TrainingDataGenerator(logged, DataGeneratorConfig(max_samples=1))
    generator.generate(tmp_path / "a.jsonl", dataset_id="ns/run-1")
    generator = TrainingDataGenerator(logged, DataGeneratorConfig())
    generator.generate(tmp_path / "a.jsonl", dataset_id="ns/run-1")
    (entry,) = list(logged.store.iter_datasets())
    assert entry.record_count == 4


def test_without_membership_nothing_is_recorded(logged: UsageLogger, tmp_path: Path) -> None:
    config = DataGeneratorConfig(record_membership=False)
    result = TrainingDataGenerator(logged, config).generate(tmp_path / "a.jsonl")
    assert result.dataset_id is None and list(logged.store.iter_datasets()) == []


def test_erasing_a_users_records_keeps_what_others_share(logged: UsageLogger) -> None:
    store = logged.store
    nodes_before = _node_count(store)  # system prompt shared, three user turns
    anna = _ids_of(logged, "user-anna")
    assert len(anna) == 3
    counts = store.erase_records(anna)
    assert counts == {"records": 3, "conversation_nodes": 2}
    assert _node_count(store) == nodes_before - 2
    (bob,) = list(logged.get_records(limit=None))
    assert bob.messages is not None and bob.messages[0] == SYSTEM  # the shared prefix kept


def _ids_of(logger: UsageLogger, key: str) -> list[str]:
    from afs.continuous.records import compute_assignment_hash

    digest = compute_assignment_hash(key)
    assert digest is not None
    return logger.store.ids_for_assignment(digest)


def test_statistics_no_longer_count_erased_records(logged: UsageLogger) -> None:
    before = logged.store.statistics()
    logged.store.erase_records(_ids_of(logged, "user-anna"))
    after = logged.store.statistics()
    assert (before.count, after.count) == (4, 1)


def test_forget_erases_and_names_the_data_sets_and_versions(
    logged: UsageLogger, store_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    TrainingDataGenerator(logged, DataGeneratorConfig()).generate(
        tmp_path / "a.jsonl", dataset_id="ds-a", model_version="m-v2"
    )
    anna = _ids_of(logged, "user-anna")
    logged.close()
    argv = ["--db", store_target, "--json", "forget", "--assignment-key", "user-anna"]
    assert main([*argv, "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert (dry["records"], dry["model_versions"]) == (3, ["m-v2"])
    assert main(argv) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["records"], done["conversation_nodes"], done["dry_run"]) == (3, 2, False)
    assert [d["dataset_id"] for d in done["datasets"]] == ["ds-a"]
    assert main(["--db", store_target, "lineage", anna[0]]) == 0
    assert "(erased since) went into 1 data sets" in capsys.readouterr().out
    assert main(argv) == 0  # asked again: nothing left to erase
    assert json.loads(capsys.readouterr().out)["records"] == 0


def test_forget_by_ids_file(
    logged: UsageLogger, store_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = _ids_of(logged, "user-bob")
    logged.close()
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# erasure request 17\n{bob[0]}\n\nnot-a-record\n", encoding="utf-8")
    assert main(["--db", store_target, "forget", "--ids", str(ids)]) == 0
    assert "erased 1 records of the 2 ids listed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["forget"], "one of the arguments --assignment-key --ids is required"),
        (["forget", "--assignment-key", "k", "--ids", "f"], "not allowed with argument"),
    ],
)
def test_forget_needs_exactly_one_subject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--db", str(tmp_path / "u.db"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_bad_line_in_the_ids_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "u.db"
    UsageLogger(db).close()
    ids = tmp_path / "ids.txt"
    ids.write_text("good-id\n" + "x" * 300 + "\n", encoding="utf-8")
    assert main(["--db", str(db), "forget", "--ids", str(ids)]) == 2
    assert f"--ids {ids} line 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--dataset-id", "", "must be a non-empty string"),
        ("--dataset-id", "x" * 600, "at most 512"),
        ("--model-version", "v\x00", "NUL"),
    ],
)
def test_a_bad_data_set_id_or_version_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    db = tmp_path / "u.db"
    with UsageLogger(db) as logger:
        logger.log("q", "r", "m", quality_score=0.9, user_feedback=1)
    out = tmp_path / "out.jsonl"
    assert main(["--db", str(db), "export", str(out), f"{flag}={value}"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_lineage_of_an_unknown_record_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "u.db"
    UsageLogger(db).close()
    assert main(["--db", str(db), "lineage", "nope"]) == 1
    assert "is not here and in no data set" in capsys.readouterr().out
