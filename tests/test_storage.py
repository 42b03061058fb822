"""The exporter's --upload: the data set copied to object storage with fsspec (its own
``file://`` file system here: the same code path as ``s3://`` and ``gs://``, whose
packages talk to services these tests cannot reach)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from afs.continuous.cli import EXIT_INVALID, EXIT_OK, main
from tests.docs_examples import ROOT

SAMPLE = ROOT / "examples" / "usage_sample.jsonl"


@pytest.fixture
def database(tmp_path: Path) -> str:
    db = str(tmp_path / "u.db")
    assert main(["--db", db, "import", str(SAMPLE)]) == EXIT_OK
    return db


def test_the_data_set_is_uploaded_whole_and_the_report_says_where(
    tmp_path: Path, database: str
) -> None:
    out, report = tmp_path / "t.jsonl", tmp_path / "report.json"
    url = f"file://{tmp_path}/bucket/nayru-run-1/dataset.jsonl"
    argv = ["--db", database, "export", str(out), "--report", str(report), f"--upload={url}"]
    assert main(argv) == EXIT_OK
    uploaded = tmp_path / "bucket" / "nayru-run-1" / "dataset.jsonl"
    assert uploaded.read_bytes() == out.read_bytes() and out.stat().st_size > 0
    data = json.loads(report.read_text())
    assert data["uri"] == url
    assert data["sha256"] == hashlib.sha256(uploaded.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("bucket/dataset.jsonl", "--upload bucket/dataset.jsonl: not a URL"),
        ("nosuchscheme://b/d.jsonl", "Protocol not known: nosuchscheme"),
    ],
    ids=["not-a-url", "unknown-scheme"],
)
def test_an_unusable_upload_url_is_named(
    tmp_path: Path,
    database: str,
    capsys: pytest.CaptureFixture[str],
    url: str,
    message: str,
) -> None:
    out = tmp_path / "t.jsonl"
    assert main(["--db", database, "export", str(out), "--upload", url]) == EXIT_INVALID
    assert message in capsys.readouterr().err


@pytest.mark.skipif(
    importlib.util.find_spec("adlfs") is not None, reason="the abfs:// file system is installed"
)
def test_a_scheme_whose_file_system_is_missing_says_what_to_install(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--db", database, "export", str(tmp_path / "t.jsonl"), "--upload=abfs://c/d.jsonl"]
    assert main(argv) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "the file system for abfs:// is not installed" in err
    assert "pip install 'afs-continuous[storage]'" in err


def test_a_failed_upload_is_an_error_and_reports_nothing(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the upload needs a directory")
    report = tmp_path / "report.json"
    url = f"file://{blocker}/dataset.jsonl"
    argv = ["--db", database, "export", str(tmp_path / "t.jsonl"), "--report", str(report),
            f"--upload={url}"]  # fmt: skip
    assert main(argv) == EXIT_INVALID
    assert f"cannot upload to {url}" in capsys.readouterr().err
    assert not report.exists()  # a trainer is never told of a data set that is not there


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuch://user:MARKER@host/d.jsonl", "Protocol not known: nosuch"),
        ("memory://user:MARKER@host/d.jsonl",
         "--upload memory://host/d.jsonl: memory:// keeps nothing after this process ends"),
        ("MEMORY://bucket/d.jsonl", "MEMORY:// keeps nothing"),
        ("host:MARKER@bucket/d.jsonl", "--upload bucket/d.jsonl: not a URL"),
    ],
    ids=["unknown-scheme", "memory", "memory-upper-case", "not-a-url"],
)  # fmt: skip
def test_an_upload_url_is_shown_without_credentials_and_memory_is_refused(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    out = tmp_path / "t.jsonl"
    assert main(["--db", database, "export", str(out), "--upload", url]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert message in err and "MARKER" not in err


def test_a_scheme_that_keeps_nothing_is_refused_before_anything_is_exported(
    tmp_path: Path, database: str
) -> None:
    out = tmp_path / "t.jsonl"
    assert main(["--db", database, "export", str(out), "--upload=memory://b/d"]) == EXIT_INVALID
    assert not out.exists()


def test_the_report_and_the_output_name_the_upload_without_its_credentials(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = tmp_path / "t.jsonl", tmp_path / "report.json"
    url = f"file://{tmp_path}/bucket/d.jsonl?token=MARKER"
    argv = ["--db", database, "export", str(out), "--report", str(report), f"--upload={url}"]
    assert main(argv) == EXIT_OK
    assert "MARKER" not in capsys.readouterr().out
    assert json.loads(report.read_text())["uri"] == f"file://{tmp_path}/bucket/d.jsonl"
