"""The afs-continuous command."""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from afs.continuous import UsageLogger
from afs.continuous.ab_test import ABTestManager
from afs.continuous.cli import EXIT_INVALID, EXIT_NOT_FOUND, EXIT_OK, build_parser, main
from tests.docs_examples import ROOT

SAMPLE = ROOT / "examples" / "usage_sample.jsonl"


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    assert main(argv) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def test_help_works_from_the_installed_script() -> None:
    script = Path(sys.executable).parent / "afs-continuous"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "afs.continuous"]
    for args in (["--help"], ["export", "--help"], ["import", "--help"]):
        done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "usage: afs-continuous" in done.stdout


def test_log_feedback_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "u.db")
    logged = _json(
        capsys,
        [
            "--db",
            db,
            "--json",
            "log",
            "--query",
            "q",
            "--response",
            "r",
            "--model",
            "m",
            "--quality",
            "0.8",
            "--latency-ms",
            "12",
        ],
    )
    assert isinstance(logged, dict)
    assert main(["feedback", logged["id"], "-1", "--db", db, "--text", "wrong"]) == EXIT_OK
    capsys.readouterr()
    stats = _json(capsys, ["stats", "--db", db, "--json"])
    assert isinstance(stats, dict)
    assert (stats["total"], stats["negative_feedback"], stats["avg_latency_ms"]) == (1, 1, 12.0)


def test_unknown_record_id_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "u.db")
    assert main(["--db", db, "db", "migrate"]) == EXIT_OK
    assert main(["--db", db, "feedback", "missing", "1"]) == EXIT_NOT_FOUND
    assert "no record with id 'missing'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["stats"], ["records"], ["export", "out.jsonl"], ["dedupe"], ["score"], ["feedback", "x", "1"],
     ["db", "retention", "--keep-days", "1"], ["trigger", "--no-train"]],
)  # fmt: skip
def test_a_command_that_reads_refuses_a_missing_database_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    mistyped = tmp_path / "typo" / "usgae.db"
    assert main([*command, "--db", str(mistyped)]) == EXIT_INVALID
    assert f"no database at {mistyped}" in capsys.readouterr().err
    assert not mistyped.parent.exists()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.mkdir(), "it is a directory"),
        (lambda p: p.write_text("hello"), "the file is not an SQLite database"),
        (lambda p: p.parent.joinpath("file").write_text("x"), "is a file, not a folder"),
    ],
)
def test_a_path_that_cannot_be_a_database_is_named_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], object], reason: str
) -> None:
    target = tmp_path / "usage.db"
    make(target)
    if reason == "is a file, not a folder":  # a folder in the path is a file
        target = tmp_path / "file" / "usage.db"
    assert (
        main(["log", "--query", "q", "--response", "r", "--model", "m", "--db", str(target)]) == 2
    )
    err = capsys.readouterr().err
    assert f"cannot open SQLite database {target}: " in err and reason in err
    assert "Traceback" not in err


def test_import_then_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "u.db")
    assert _json(capsys, ["--db", db, "--json", "import", str(SAMPLE)]) == {
        "imported": 120,
        "skipped": 0,
    }
    out = tmp_path / "train.jsonl"
    result = _json(
        capsys,
        ["--db", db, "--json", "export", str(out), "--format", "openai", "--min-feedback", "0"],
    )
    assert isinstance(result, dict)
    lines = out.read_text().splitlines()
    assert result["final_count"] == len(lines) > 0
    assert set(json.loads(lines[0])) == {"messages"}


def test_export_reads_json_or_yaml_config_and_flags_win(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "u.db")
    main(["--db", db, "import", str(SAMPLE)])
    (tmp_path / "c.yaml").write_text("min_quality_score: 0.0\nmin_user_feedback: null\n")
    (tmp_path / "c.json").write_text(json.dumps({"generator_config": {"format_type": "alpaca"}}))
    capsys.readouterr()
    everything = _json(
        capsys,
        [
            "--db",
            db,
            "--json",
            "export",
            str(tmp_path / "a.jsonl"),
            "--config",
            str(tmp_path / "c.yaml"),
            "--no-dedupe",
        ],
    )
    assert isinstance(everything, dict) and everything["final_count"] == 120
    alpaca = _json(
        capsys,
        [
            "--db",
            db,
            "--json",
            "export",
            str(tmp_path / "b.jsonl"),
            "--config",
            str(tmp_path / "c.json"),
            "--format",
            "completion",
        ],
    )
    assert isinstance(alpaca, dict) and alpaca["format_type"] == "completion"


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("min_quality_score: 2\n", "min_quality_score"),
        ("format_type: parquet\n", "format_type"),
        ("min_qualty_score: 0.5\n", "min_qualty_score: unknown setting"),
        ("- a list\n", "mapping"),
        ("{broken: [", "not valid YAML"),
    ],
)
def test_bad_export_config_is_named_and_touches_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config_text: str, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(config_text)
    code = main(
        [
            "--db",
            str(tmp_path / "u.db"),
            "export",
            str(tmp_path / "o.jsonl"),
            "--config",
            str(config),
        ]
    )
    assert code == EXIT_INVALID
    assert message in capsys.readouterr().err
    assert not (tmp_path / "u.db").exists() and not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "line 2: not valid JSON"),
        ('{"query": "q", "response": "r"}', "model is required"),
        ('{"query": "q", "response": "r", "model": "m", "quality_score": 3}', "quality_score"),
        ('{"query": "q", "response": "r", "model": "m", "colour": "red"}', "colour is not a usage"),
    ],
)
def test_import_is_all_or_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"query": "fine", "response": "r", "model": "m"}\n' + line + "\n")
    db = str(tmp_path / "u.db")
    assert main(["--db", db, "import", str(source)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert message in err and "nothing imported" in err
    empty = str(tmp_path / "empty.db")
    assert main(["--db", empty, "db", "migrate"]) == EXIT_OK
    capsys.readouterr()
    assert _json(capsys, ["--db", db, "--json", "stats"]) == _json(
        capsys, ["--db", empty, "--json", "stats"]
    )


def test_a_retention_archive_is_imported_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The archive is gzipped JSON Lines; import reads it whatever its name."""
    db, restored = str(tmp_path / "u.db"), str(tmp_path / "restored.db")
    main(["--db", db, "import", str(SAMPLE)])
    capsys.readouterr()
    before = _json(capsys, ["--db", db, "--json", "stats"])
    archive = tmp_path / "usage-archive.jsonl.gz"
    assert main(["--db", db, "db", "retention", "--keep-days", "0", "--archive", str(archive)]) == 0
    assert main(["--db", restored, "import", str(archive)]) == EXIT_OK
    capsys.readouterr()
    assert _json(capsys, ["--db", restored, "--json", "stats"]) == before


def test_a_truncated_gzip_file_is_refused_and_imports_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = gzip.compress(SAMPLE.read_bytes())
    source = tmp_path / "cut.jsonl.gz"
    source.write_bytes(whole[: len(whole) // 2])
    db = str(tmp_path / "u.db")
    assert main(["--db", db, "import", str(source)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "cannot read the file" in err and "nothing imported" in err
    assert _json(capsys, ["--db", db, "--json", "stats"])["total"] == 0  # type: ignore[index]


def test_records_dedupe_and_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "u.db")
    main(["--db", db, "import", str(SAMPLE)])
    capsys.readouterr()
    assert main(["--db", db, "records", "--limit", "3"]) == EXIT_OK
    assert len(capsys.readouterr().out.splitlines()) == 3
    dry = _json(capsys, ["--db", db, "--json", "dedupe", "--dry-run"])
    assert isinstance(dry, dict) and dry["duplicates"] > 0
    done = _json(capsys, ["--db", db, "--json", "dedupe"])
    assert isinstance(done, dict) and done["duplicates"] == dry["duplicates"]
    scored = _json(capsys, ["--db", db, "--json", "score"])
    assert isinstance(scored, dict) and scored["scored"] >= 0
    assert _json(capsys, ["--db", db, "--json", "score"]) == {"scored": 0, "scorer": "heuristic"}


@pytest.mark.parametrize(
    "argv",
    [
        ["log", "--query", "q", "--response", "r", "--model", "m", "--quality", "7"],
        ["stats", "--since", "last tuesday"],
    ],
)
def test_invalid_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(["--db", str(tmp_path / "u.db"), *argv]) == EXIT_INVALID
    assert "afs-continuous: error:" in capsys.readouterr().err


def test_argparse_rejects_bad_feedback(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--db", str(tmp_path / "u.db"), "feedback", "id", "5"])
    assert caught.value.code == 2


def test_status_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "state"
    assert main(["status", "--db", str(tmp_path / "u.db"), "--output-dir", str(out)]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["usage_stats"] is None and summary["ab_test"] is None
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]


def test_status_refuses_an_a_b_state_that_belongs_to_another_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with UsageLogger(tmp_path / "a.db") as logger:
        manager = ABTestManager(logger, output_dir=out)
        manager.set_champion("nayru-v1")
        manager.deploy_challenger("nayru-v2", "v2.bin")
    main(["--db", str(tmp_path / "b.db"), "import", str(SAMPLE)])
    for other in ("b.db", "missing.db"):
        capsys.readouterr()
        code = main(["status", "--db", str(tmp_path / other), "--output-dir", str(out)])
        err = capsys.readouterr().err
        assert code == EXIT_INVALID and "a.db" in err and "Traceback" not in err
    assert not (tmp_path / "missing.db").exists()
    assert main(["status", "--db", str(tmp_path / "a.db"), "--output-dir", str(out)]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["ab_test"]["challenger"]["name"] == "nayru-v2"


def test_trigger_then_run_then_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, out = str(tmp_path / "u.db"), str(tmp_path / "state")
    main(["--db", db, "import", str(SAMPLE)])
    config = tmp_path / "loop.yaml"
    config.write_text(
        "trigger_config: {min_new_samples: 5, min_samples_for_retrain: 5}\n"
        "generator_config: {min_quality_score: 0.5}\n"
    )
    capsys.readouterr()
    common = ["--db", db, "--output-dir", out, "--config", str(config)]
    assert main(["trigger", *common, "--no-train"]) == EXIT_OK
    assert "retrain data_ready (manual" in capsys.readouterr().out
    assert main(["status", *common, "--json"]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert status["status"]["total_retrains"] == 1  # as the trigger counts it
    assert main(["run", *common, "--max-iterations", "1", "--json"]) == EXIT_OK
    iteration = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert iteration["retrain_triggered"] is False  # in cooldown after the manual retrain
    assert main(["status", *common]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"]["champion_model"] == "nayru-v1"
    assert summary["usage_stats"]["total"] == 120


def test_loop_config_errors_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "loop.json"
    config.write_text(json.dumps({"trigger_config": {"min_new_sampels": 5}}))
    assert main(["run", "--config", str(config), "--max-iterations", "1"]) == EXIT_INVALID
    assert "trigger_config.min_new_sampels: unknown setting" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["db_path", "database_url"])
@pytest.mark.parametrize("command", ["run", "status", "trigger"])
def test_a_config_s_database_url_is_never_echoed_with_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, command: str
) -> None:
    config = tmp_path / "loop.json"
    config.write_text(json.dumps({key: "mysql://user:MARKERpw@host/db"}))
    argv = [command, "--config", str(config)]
    assert main([*argv, "--max-iterations", "1"] if command == "run" else argv) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "database_url must be a postgresql:// URL, got 'mysql://user:***@host/db'" in err
    assert "MARKER" not in err


def test_demo_runs_from_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seed", "3"]) == EXIT_OK
    output = capsys.readouterr().out
    assert "PROMOTED:" in output and "== 4. Summary" in output


def test_the_demo_refuses_a_database_that_holds_records_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its synthetic records would mix with real traffic and halt every A/B test."""
    db = str(tmp_path / "prod.db")
    main(["--db", db, "import", str(SAMPLE)])
    capsys.readouterr()
    assert main(["demo", "--db", db, "--hours", "1"]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "already holds 120 usage records" in err and "--reuse-db" in err
    assert _json(capsys, ["--db", db, "--json", "stats"])["total"] == 120  # type: ignore[index]
    assert main(["demo", "--db", db, "--hours", "1", "--reuse-db"]) == EXIT_OK
    assert "beside the 120 already in" in capsys.readouterr().out


def test_the_demo_keeps_its_records_in_a_new_sqlite_file_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    assert main(["demo", "--db", str(db), "--hours", "1"]) == EXIT_OK
    assert f"the demo's synthetic records go to {db}" in capsys.readouterr().out
    assert _json(capsys, ["--db", str(db), "--json", "stats"])["total"] > 0  # type: ignore[index]


def test_a_failed_retrain_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "u.db")
    assert main(["--db", db, "db", "migrate"]) == EXIT_OK
    capsys.readouterr()
    code = main(["trigger", "--db", db, "--output-dir", str(tmp_path / "loop"), "--no-train"])
    assert code == 1
    assert "only 0 training samples" in capsys.readouterr().out


def test_export_report_carries_the_dataset_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    db = str(tmp_path / "u.db")
    main(["--db", db, "import", str(SAMPLE)])
    out, report = tmp_path / "t.jsonl", tmp_path / "report.json"
    assert main(["--db", db, "export", str(out), "--report", str(report)]) == EXIT_OK
    data = json.loads(report.read_text())
    assert data["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert data["final_count"] == len(out.read_text().splitlines())


BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
       f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
       f"*{chr(97 + i)}]" for i in range(8)]
    + ["trigger_config: *i"]
)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("bomb.yaml", BOMB, "aliases expand to more than 100000 values"),
        ("loop.yaml", "a: &a [*a]\ntrigger_config: *a", "aliases expand to more than"),
        ("big.yaml", "x: " + "a" * (1 << 20), "larger than 1048576 bytes"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("long.json", json.dumps({"trigger_config": {"min_new_samples": "9" * 5000}}),
         "min_new_samples"),
    ],
    ids=["alias-bomb", "recursive-alias", "oversized", "deep", "long-value"],
)  # fmt: skip
def test_a_hostile_config_file_is_refused_at_once_without_echoing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, error: str
) -> None:
    config = tmp_path / name
    config.write_text(text)
    assert main(["run", "--config", str(config), "--max-iterations", "1"]) == EXIT_INVALID
    message = capsys.readouterr().err
    assert error in message
    assert len(message) < 1000


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["records", "--limit", "1" + "0" * 20], "--limit: must be a whole number from 0 to"),
        (["export", "o.jsonl", "--max-samples", "1" + "0" * 20], "--max-samples: must be a whole"),
        (["score", "--batch-size", "0"], "--batch-size: must be a whole number from 1"),
        (["stats", "--since", "99999999d"], "since reaches back before the calendar starts"),
        (["records", "--since", "99999999d"], "since reaches back before the calendar starts"),
        (["db", "retention", "--keep-days", "99999999"], "--keep-days: must be a number of days"),
        (["log", "--query", "q", "--response", "r", "--model", "m", "--tokens", "1" + "0" * 20],
         "--tokens: must be a whole number from 0 to 2,147,483,647"),
    ],
    ids=["limit", "max-samples", "batch-size", "stats-since", "records-since", "keep-days",
         "tokens"],
)  # fmt: skip
def test_out_of_range_numbers_and_dates_are_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], error: str
) -> None:
    db = str(tmp_path / "u.db")
    assert main(["--db", db, "db", "migrate"]) == EXIT_OK
    try:
        code = main(["--db", db, *argv])
    except SystemExit as exc:  # argparse's own refusal
        code = int(exc.code or 0)
    assert code != 0
    err = capsys.readouterr().err
    assert error in err and "Traceback" not in err


def test_an_import_line_nested_too_deeply_is_refused_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = tmp_path / "deep.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    lines.write_text(
        '{"query": "q", "response": "r", "model": "m"}\n'
        f'{{"query": {deep}, "response": "r", "model": "m"}}\n'
    )
    db = str(tmp_path / "u.db")
    assert main(["--db", db, "import", str(lines)]) == EXIT_INVALID
    assert "line 2: nested too deeply to be a record; nothing imported" in capsys.readouterr().err
    assert main(["--db", db, "--json", "stats"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["total"] == 0


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("loop_status.json", "[]", "corrupt loop status (a JSON list, not an object)"),
        ("loop_status.json", "{not json", "corrupt loop status"),
        ("ab_test_state.json", '{"version": "2"}',
         "corrupt A/B state (version '2' is not a number)"),
        ("ab_test_state.json", "[1, 2]", "corrupt A/B state (not a JSON object)"),
        ("ab_test_state.json", '{"version": 1, "history": [7]}', "corrupt A/B state"),
    ],
    ids=["status-list", "status-garbage", "state-version-text", "state-list", "state-history"],
)  # fmt: skip
def test_a_corrupt_state_file_is_named_instead_of_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, error: str
) -> None:
    out = tmp_path / "loop"
    out.mkdir()
    (out / name).write_text(content)
    assert main(["status", "--db", str(tmp_path / "u.db"), "--output-dir", str(out)]) != 0
    err = capsys.readouterr().err
    assert error in err and "Traceback" not in err


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize(
    "command",
    ["log", "feedback", "import", "stats", "records", "export", "dedupe", "score", "run",
     "status", "trigger"],
)  # fmt: skip
def test_every_option_of_every_command_says_what_it_does(command: str) -> None:
    parser = _subcommands()[command]
    assert parser.description, f"{command} has no description"
    bare = [a.dest for a in parser._actions if a.help in (None, "") and a.dest != "help"]
    assert bare == [], f"{command}: options without help: {bare}"


def test_status_offers_only_the_options_it_uses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["status", "--help"])
    text = capsys.readouterr().out
    assert "--output-dir" in text
    assert not {"--train-cmd", "--no-train", "--max-iterations"} & set(text.split())


def test_a_since_that_is_neither_form_names_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "u.db")
    main(["--db", db, "db", "migrate"])
    capsys.readouterr()
    assert main(["--db", db, "stats", "--since", "yesterday"]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "ISO-8601" in err and "7d" in err


def test_retention_with_nothing_to_archive_writes_no_file_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, archive = str(tmp_path / "u.db"), tmp_path / "old.jsonl.gz"
    main(["--db", db, "import", str(SAMPLE)])
    capsys.readouterr()
    argv = ["--db", db, "db", "retention", "--keep-days", "36500", "--archive", str(archive)]
    assert main(argv) == EXIT_OK
    assert "nothing to archive, no file written" in capsys.readouterr().out
    assert not archive.exists()


def test_a_report_path_that_is_a_directory_is_refused_before_exporting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "u.db")
    main(["--db", db, "import", str(SAMPLE)])
    capsys.readouterr()
    out = tmp_path / "train.jsonl"
    assert main(["--db", db, "export", str(out), "--report", str(tmp_path)]) == EXIT_INVALID
    assert f"--report {tmp_path}: is a directory" in capsys.readouterr().err
    assert not out.exists()


def test_the_command_named_twice_says_the_entrypoint_is_it_already(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`podman run IMAGE afs-continuous --help` runs `afs-continuous afs-continuous
    --help` (the image's entrypoint is the command)."""
    assert main(["afs-continuous", "--help"]) == EXIT_INVALID
    assert "the image's entrypoint is afs-continuous already" in capsys.readouterr().err


def test_the_default_database_path_that_cannot_be_made_says_it_is_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The image's HOME is /nonexistent on a read-only root: the path alone does not say
    why it was chosen, nor what to give instead."""
    monkeypatch.setenv("HOME", "/proc/afs-nonexistent")
    monkeypatch.delenv("AFS_DATABASE_URL", raising=False)
    assert main(["log", "--query", "q", "--response", "r", "--model", "m"]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "it is the default under $HOME: give --db, or set AFS_DATABASE_URL" in err
