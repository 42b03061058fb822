"""Values out of any range — numbers of hundreds of digits, dates past the calendar's ends,
data nested too deep, ids that are not text — are refused with one line naming the
field, through log(), import, the command line and the collector: no traceback, no 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import UsageLogger
from afs.continuous.cli import main
from afs.continuous.errors import InvalidBatchError, InvalidFieldError
from tests.collector.conftest import (
    AUTH,
    Serve,
    serve as serve,
)

HUGE = 10**400
HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("quality-400-digits", {"quality_score": HUGE}, "quality_score must be a finite number"),
    ("latency-400-digits", {"latency_ms": HUGE}, "latency_ms must be a finite number"),
    ("tokens-400-digits", {"token_count": HUGE}, "token_count must be at most"),
    ("year-0", {"timestamp": "0001-01-01T00:00:00+01:00"}, "outside the dates"),
    ("year-10000", {"timestamp": "9999-12-31T23:00:00-05:00"}, "outside the dates"),
    ("lone-surrogate-id", {"id": "\ud800"}, "record_id must be valid Unicode"),
    ("nul-id", {"id": "a\x00b"}, "record_id"),
]


def _deep(depth: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    current = top
    for _ in range(depth):
        current["a"] = {}
        current = current["a"]
    return top


@pytest.mark.parametrize(("fields", "message"), [r[1:] for r in HOSTILE],
                         ids=[r[0] for r in HOSTILE])  # fmt: skip
def test_log_many_refuses_naming_the_field(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    with UsageLogger(tmp_path / "u.db") as logger:
        with pytest.raises(InvalidBatchError, match=message):
            logger.log_many([{"query": "q", "response": "r", "model": "m", **fields}])
        assert logger.get_statistics()["total"] == 0


def test_a_huge_integer_is_shown_by_its_size_not_printed() -> None:
    error = InvalidFieldError("quality_score", 10**5000, "must be a number")
    assert "an integer of about 5,000 digits" in str(error)


def test_context_nested_100000_deep_is_refused(tmp_path: Path) -> None:
    with (
        UsageLogger(tmp_path / "u.db") as logger,
        pytest.raises(InvalidFieldError, match="nested too deeply"),
    ):
        logger.log("q", "r", "m", context=_deep(100_000))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query":"q","response":"r","model":"m","quality_score":' + "9" * 5000 + "}",
         "line 1: not a readable record"),
        ('{"query":"q","response":"r","model":"m","quality_score":' + "9" * 400 + "}",
         "line 1: quality_score must be a finite number"),
        ('{"id":"\\ud800","query":"q","response":"r","model":"m"}',
         "line 1: record_id must be valid Unicode"),
        ('{"query":"q","response":"r","model":"m","timestamp":"0001-01-01T00:00:00+01:00"}',
         "line 1: timestamp is outside the dates"),
    ],
)  # fmt: skip
def test_import_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(line + "\n")
    assert main(["--db", str(tmp_path / "u.db"), "import", str(source)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_stats_since_out_of_range_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], since: str
) -> None:
    UsageLogger(tmp_path / "u.db").close()
    assert main(["--db", str(tmp_path / "u.db"), "stats", "--since", since]) == 2
    assert "since must be" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("generator_config: [1, 2]\n", "its generator_config must be a mapping"),
        ("generator_config: null\n", "its generator_config must be a mapping"),
        ("[1, 2]\n", "expected a mapping of settings at the top level"),
    ],
)
def test_export_config_that_is_no_mapping_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, message: str
) -> None:
    UsageLogger(tmp_path / "u.db").close()
    config = tmp_path / "c.yaml"
    config.write_text(section)
    assert main(["--db", str(tmp_path / "u.db"), "export", str(tmp_path / "o.jsonl"),
                 "--config", str(config)]) == 2  # fmt: skip
    assert message in capsys.readouterr().err


def test_export_into_a_missing_directory_needs_parents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "u.db")
    UsageLogger(db).close()
    target = tmp_path / "no" / "such" / "dir" / "o.jsonl"
    assert main(["--db", db, "export", str(target)]) == 2
    assert "create it, or pass --parents" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    assert main(["--db", db, "export", str(target), "--parents"]) == 0
    assert target.exists()


@pytest.mark.parametrize(("fields", "message"), [r[1:] for r in HOSTILE],
                         ids=[r[0] for r in HOSTILE])  # fmt: skip
async def test_the_collector_answers_400_naming_the_field(
    serve: Serve, fields: dict[str, Any], message: str
) -> None:
    record = {"query": "q", "response": "r", "model": "m", **fields}
    body = json.dumps(record)
    async with serve() as (client, _):
        answer = await client.post(
            "/v1/usage", data=body, headers=AUTH | {"Content-Type": "application/json"}
        )
        assert answer.status == 400, await answer.text()
        assert message.split(" ")[0] in (await answer.text())


@pytest.mark.parametrize("header", ["Bearer caf\xe9-token", "B\xe9arer x", "\xff\xfe"])
async def test_a_non_ascii_authorization_header_is_a_401(serve: Serve, header: str) -> None:
    async with serve() as (client, _):
        answer = await client.post(
            "/v1/usage", json={"query": "q", "response": "r", "model": "m"},
            headers={"Authorization": header},
        )  # fmt: skip
        assert answer.status == 401


@pytest.mark.parametrize(
    ("text", "field"),
    [("a\x00b", "text"), ("x" * 70_000, "text"), ("\ud800", "text"), (5, "text")],
    ids=["nul", "too-long", "lone-surrogate", "number"],
)
async def test_bad_feedback_text_is_a_400_naming_it(serve: Serve, text: Any, field: str) -> None:
    async with serve() as (client, collector):
        record_id = collector.logger.log("q", "r", "m")
        body = json.dumps({"id": record_id, "feedback": 1, "text": text})
        answer = await client.post(
            "/v1/feedback", data=body, headers=AUTH | {"Content-Type": "application/json"}
        )
        assert answer.status == 400, await answer.text()
        assert (await answer.json())["field"] == field
        record = collector.logger.store.get(record_id)
        assert record is not None and record.user_feedback is None


@pytest.mark.parametrize("command", ["trigger", "status"])
def test_a_span_of_hours_past_ten_years_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    UsageLogger(tmp_path / "u.db").close()
    config = tmp_path / "loop.json"
    config.write_text(json.dumps({"trigger_config": {"quality_window_hours": 1e8}}))
    assert main(["--db", str(tmp_path / "u.db"), command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "quality_window_hours" in err and "Traceback" not in err


def test_export_refuses_a_rehearsal_buffer_that_is_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    UsageLogger(tmp_path / "u.db").close()
    out = tmp_path / "o.jsonl"
    assert (
        main(["--db", str(tmp_path / "u.db"), "export", str(out), "--existing", "/dev/zero"]) == 2
    )
    assert "existing_data_path is not a regular file" in capsys.readouterr().err
    assert not out.exists()


def test_a_failed_trainer_is_one_log_line_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from afs.continuous import AutoRetrainer, TriggerConfig

    def broken(path: Path) -> dict[str, Any]:
        raise RuntimeError("CUDA out of memory")

    with UsageLogger(tmp_path / "u.db") as logger:
        logger.log("q", "r", "m", quality_score=0.9, user_feedback=1)
        trigger = TriggerConfig(min_samples_for_retrain=1)
        outcome = AutoRetrainer(logger, trigger, output_dir=tmp_path).check_and_retrain(
            broken, force=True
        )
    assert outcome is not None and outcome["status"] == "failed"
    failures = [r for r in caplog.records if "train_fn failed" in r.getMessage()]
    assert failures and all(r.exc_info is None for r in failures if r.levelname == "WARNING")
    assert "CUDA out of memory" in failures[0].getMessage()


def test_abtest_against_an_unreachable_cluster_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "u"}}],
    }  # fmt: skip
    (tmp_path / "kubeconfig").write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    for action in (["list"], ["status", "t"], ["promote", "t"]):
        assert main(["abtest", *action]) == 1
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [
            "afs-continuous abtest: error: cannot reach the cluster: [Errno 111] Connection refused"
        ]


def test_an_empty_database_target_asks_whether_the_variable_is_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--db", "", "stats"]) == 2
    assert "is $AFS_DATABASE_URL set?" in capsys.readouterr().err
