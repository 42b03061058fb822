"""Every command-line option that takes a number or a date, fed values out of any range:
each is refused with one line and exit status 2 — no traceback, no hang, nothing
written."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from afs.continuous import UsageLogger
from afs.continuous.argtypes import NumberError, port, positive_seconds, real_number, whole_number
from afs.continuous.cli import main
from afs.continuous.collector.cli import main as collect_main
from afs.continuous.demo import main as demo_main
from afs.continuous.kube.abtest_cli import main as abtest_main
from afs.continuous.kube.operator import main as operator_main

NUMBERS = ["nan", "inf", "-inf", "-1", "1e400", "9" * 400, "9" * 5000, "abc", "", "0x10", "1e"]
DATES = [
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00", "99999999d", "1e400h",
    "nanh", "-5d", "9" * 400 + "d", "2026-13-45", "", "yesterday",
]  # fmt: skip
SPLITS = ["nan,0,0", "1e400,0,0", "-1,1,1", "0.5,0.5", "0.9,0.05,0.05,0"]
LOG = ["log", "--query", "q", "--response", "r", "--model", "m"]

# (command line before the value, option, values, the command's entry point)
Main = Callable[[Sequence[str]], int]
OPTIONS: list[tuple[list[str], str, list[str], Main]] = [
    (LOG, "--latency-ms", NUMBERS, main),
    (LOG, "--quality", NUMBERS, main),
    (LOG, "--tokens", NUMBERS, main),
    (LOG, "--feedback", [v for v in NUMBERS if v != "-1"], main),
    (["feedback", "some-id"], "", [v for v in NUMBERS if v != "-1"], main),
    (["stats"], "--since", DATES, main),
    (["stats"], "--until", DATES, main),
    (["records"], "--since", DATES, main),
    (["records"], "--min-quality", NUMBERS, main),
    (["records"], "--limit", NUMBERS, main),
    (["export", "{tmp}/out.jsonl"], "--since", DATES, main),
    (["export", "{tmp}/out.jsonl"], "--min-quality", NUMBERS, main),
    (["export", "{tmp}/out.jsonl"], "--max-samples", NUMBERS, main),
    (
        ["export", "{tmp}/out.jsonl"],
        "--split",
        [*NUMBERS, "nan,0,0", "1e400,0,0", "-1,1,1", "0.5,0.5", "0.9,0.05,0.05,0"],
        main,
    ),
    (["db", "retention"], "--keep-days", NUMBERS, main),
    (["score"], "--batch-size", NUMBERS, main),
    (["run", "--no-train", "--output-dir", "{tmp}/loop"], "--max-iterations", NUMBERS, main),
    (["trigger", "--no-train", "--output-dir", "{tmp}/loop"], "--max-iterations", NUMBERS, main),
    (["report", "--state", "{tmp}/ab.json"], "--points", NUMBERS, abtest_main),
    ([], "--seed", NUMBERS, demo_main),
    ([], "--hours", NUMBERS, demo_main),
    (["--no-auth"], "--port", NUMBERS, collect_main),
    (["--no-auth"], "--kserve-port", NUMBERS, collect_main),
    (["--no-auth"], "--max-body-bytes", NUMBERS, collect_main),
    (["--no-auth"], "--max-records", NUMBERS, collect_main),
    (["--no-auth"], "--join-ttl", NUMBERS, collect_main),
    (["--no-auth"], "--join-max-pending", NUMBERS, collect_main),
    (["--no-auth"], "--async-max-pending", NUMBERS, collect_main),
    (["--no-auth"], "--retry-after", NUMBERS, collect_main),
    (["--no-auth"], "--body-timeout", NUMBERS, collect_main),
    (["--all-namespaces"], "--poll-seconds", NUMBERS, operator_main),
    (["--all-namespaces"], "--metrics-port", NUMBERS, operator_main),
    (["--all-namespaces"], "--health-port", NUMBERS, operator_main),
]
CASES = [
    pytest.param(before, option, value, entry, id=f"{' '.join(before[:1])}{option}={value[:12]}")
    for before, option, values, entry in OPTIONS
    for value in values
]


@pytest.mark.parametrize(("before", "option", "value", "entry"), CASES)
def test_a_value_out_of_range_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    before: list[str],
    option: str,
    value: str,
    entry: Main,
) -> None:
    db = tmp_path / "u.db"
    UsageLogger(db).close()
    (tmp_path / "ab.json").write_text("{}")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in before]
    argv += [f"{option}={value}"] if option else [value]
    if entry in (main, collect_main):
        argv += ["--db", str(db)]
    try:
        code = entry(argv)
    except SystemExit as exit_:  # argparse's refusal
        code = exit_.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if "error:" in line]  # after argparse's usage
    assert len(line) < 300, line  # a value of thousands of digits is not echoed whole
    assert UsageLogger(db).get_statistics()["total"] == 0


@pytest.mark.parametrize(
    ("convert", "text", "expected"),
    [
        (port, "0", 0), (port, " 8080 ", 8080), (port, "+443", 443),
        (whole_number(1, 10), "10", 10), (positive_seconds, "0.5", 0.5),
        (positive_seconds, "1e3", 1000.0), (positive_seconds, ".25", 0.25),
        (real_number(0, 1), "0", 0.0), (real_number(0, 1), "1.", 1.0),
    ],
)  # fmt: skip
def test_values_inside_the_range_are_read(
    convert: Callable[[str], float], text: str, expected: float
) -> None:
    assert convert(text) == expected


@pytest.mark.parametrize(
    ("convert", "text", "message"),
    [
        (port, "65536", "must be a port from 0 to 65,535, got '65536'"),
        (positive_seconds, "0", "must be a number of seconds more than 0 to"),
        (whole_number(1, 10), "9" * 5000, "… (5000 characters)"),
        (real_number(0, 1), "nan", "must be a number from 0 to 1, got 'nan'"),
    ],
)  # fmt: skip
def test_a_refusal_names_the_range_and_is_both_kinds_of_error(
    convert: Callable[[str], float], text: str, message: str
) -> None:
    with pytest.raises(NumberError) as caught:
        convert(text)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError | argparse.ArgumentTypeError)
