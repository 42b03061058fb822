"""Importing the same file twice, the same on both stores: lines without an id get one
derived from what they say, so a second import recognises them and writes nothing twice;
lines with ids of their own keep the rule that a stored id is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from afs.continuous.cli import EXIT_INVALID, EXIT_OK, main
from afs.continuous.records import ImportedIds
from afs.continuous.store import RecordQuery, UsageStore
from tests.docs_examples import ROOT

SAMPLE = ROOT / "examples/usage_sample.jsonl"
AT = "2026-01-02T03:04:0%dZ"


def _import(capsys: pytest.CaptureFixture[str], target: str, path: Path) -> dict[str, int]:
    capsys.readouterr()
    assert main(["--db", target, "--json", "import", str(path)]) == EXIT_OK
    result: dict[str, int] = json.loads(capsys.readouterr().out)
    return result


def test_a_second_import_of_an_id_less_file_is_skipped_and_counted(
    store_target: str, store: UsageStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _import(capsys, store_target, SAMPLE) == {"imported": 120, "skipped": 0}
    assert _import(capsys, store_target, SAMPLE) == {"imported": 0, "skipped": 120}
    assert store.count_records(RecordQuery()) == 120
    assert main(["--db", store_target, "import", str(SAMPLE)]) == EXIT_OK
    assert "skipped 120 stored already" in capsys.readouterr().out


def test_identical_lines_in_one_file_are_both_kept_and_a_grown_file_adds_only_its_new_lines(
    store_target: str, store: UsageStore, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The same exchange logged twice at the same second is two records (told apart by
    occurrence); the file re-imported with lines appended writes only those lines."""
    exchange = {"query": "hi", "response": "hello", "model": "m", "timestamp": AT % 5}
    line = json.dumps(exchange) + "\n"
    other = line.replace("hello", "hey")
    source = tmp_path / "in.jsonl"
    source.write_text(line * 2)
    assert _import(capsys, store_target, source) == {"imported": 2, "skipped": 0}
    source.write_text(line * 3 + other)
    assert _import(capsys, store_target, source) == {"imported": 2, "skipped": 2}
    assert store.count_records(RecordQuery()) == 4


def test_a_line_that_differs_only_in_its_timestamp_is_a_new_record(
    store_target: str, store: UsageStore, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    line = {"query": "hi", "response": "hello", "model": "m", "timestamp": AT % 5}
    source.write_text(json.dumps(line))
    _import(capsys, store_target, source)
    source.write_text(json.dumps(line | {"timestamp": AT % 6}))
    assert _import(capsys, store_target, source) == {"imported": 1, "skipped": 0}


def test_a_stored_id_of_the_file_s_own_is_still_an_error_and_nothing_is_written(
    store_target: str, store: UsageStore, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "mine-1", "query": "q", "response": "r", "model": "m"}\n')
    _import(capsys, store_target, source)
    source.write_text(
        '{"query": "new", "response": "r", "model": "m"}\n'
        '{"id": "mine-1", "query": "q", "response": "r", "model": "m"}\n'
    )
    assert main(["--db", store_target, "import", str(source)]) == EXIT_INVALID
    assert "must be unique; a record has it already" in capsys.readouterr().err
    assert store.count_records(RecordQuery()) == 1


def test_derived_ids_are_stable_across_runs_and_key_order() -> None:
    one, two = ImportedIds(), ImportedIds()
    first = one.for_line({"query": "q", "response": "r", "model": "m"})
    assert first == two.for_line({"model": "m", "response": "r", "query": "q"})
    assert first.startswith(ImportedIds.PREFIX) and len(first) == 20
    assert one.for_line({"query": "q", "response": "r", "model": "m"}) != first
    assert first in one.given and len(one.given) == 2
