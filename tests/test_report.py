"""The picture of an A/B test, drawn for the demo's test from its records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from afs.continuous import UsageLogger
from afs.continuous.demo import run_demo
from afs.continuous.errors import ContinuousError
from afs.continuous.kube.abtest_cli import main as abtest_main
from afs.continuous.report import (
    figure,
    local_test,
    render_png,
    replay,
    windows_until,
    write_report,
)
from afs.continuous.timeutil import parse_timestamp, utc_now


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("demo")
    run_demo(workdir, say=lambda line: None)
    return workdir


def _state(workdir: Path) -> dict[str, object]:
    data = json.loads((workdir / "ab_test_state.json").read_text())
    assert isinstance(data, dict)
    return data


def test_the_demo_s_ended_test_is_kept_for_its_report(demo: Path) -> None:
    test = local_test(_state(demo), last=True)
    assert (test.champion, test.challenger, test.outcome) == ("nayru-v1", "nayru-v3", "promoted")
    assert test.ended is not None and test.started < test.ended
    assert test.settings.planned_challenger_share == pytest.approx(0.3)  # the demo's, stored
    assert test.settings.min_duration_hours == 12


def test_the_replay_narrows_and_ends_where_the_loop_decided(demo: Path) -> None:
    test = local_test(_state(demo), last=True)
    with UsageLogger(str(demo / "usage.db")) as logger:
        snapshots = replay(logger.store, test, now=utc_now(), points=24)
    assert [s.hours for s in snapshots] == sorted(s.hours for s in snapshots)
    assert snapshots[-1].verdict.kind.value == "PROMOTE"  # as the loop judged it
    widths = [s.verdict.metrics["quality"]["upper"] - s.verdict.metrics["quality"]["lower"]
              for s in snapshots if s.verdict.metrics.get("quality")]  # fmt: skip
    assert len(widths) > 5 and widths[-1] < widths[0]  # the sequence narrows
    assert {s.share for s in snapshots} == {0.3}


def test_the_picture_has_a_panel_for_each_metric_with_data(demo: Path) -> None:
    test = local_test(_state(demo), last=True)
    with UsageLogger(str(demo / "usage.db")) as logger:
        snapshots = replay(logger.store, test, now=utc_now(), points=24)
    drawing = figure(test, snapshots)
    titles = [axis.get_title() for axis in drawing.axes]
    assert titles == [
        "Quality (challenger − champion)", "Latency (log ratio of geometric means)",
        "Negative feedback (rate difference)", "Errors: evidence of an excess on the challenger",
        "Traffic split",
    ]  # fmt: skip
    for axis in drawing.axes:
        assert axis.get_lines(), axis.get_title()  # each panel draws something
    assert drawing.texts[0].get_text() == "nayru-v3 vs nayru-v1: PROMOTE (promoted)"


def test_the_command_writes_the_png_and_a_page_that_embeds_it(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", "--state", str(demo / "ab_test_state.json"), "--last", "--out",
            str(tmp_path), "--points", "12", "--json"]  # fmt: skip
    assert abtest_main(argv) == 0
    written = json.loads(capsys.readouterr().out)
    png, page = Path(written["png"]), Path(written["html"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "data:image/png;base64," in text and "<b>PROMOTE</b>" in text
    assert "quality proven higher" in text


def test_a_state_is_not_drawn_from_another_database_s_records(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    UsageLogger(str(tmp_path / "other.db")).close()
    argv = ["report", "--state", str(demo / "ab_test_state.json"), "--last",
            "--db", str(tmp_path / "other.db"), "--out", str(tmp_path)]  # fmt: skip
    assert abtest_main(argv) != 0
    assert "holds the A/B test of another database" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report"], "report needs an ABTest NAME or --state FILE"),
        (["report", "x", "--state", "s.json"], "report needs an ABTest NAME or --state FILE"),
        (["report", "--state", "/nonexistent/ab.json"], "not a readable A/B state"),
    ],
    ids=["neither", "both", "no-state"],
)
def test_a_report_without_a_test_says_why(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert abtest_main(argv) != 0
    assert message in capsys.readouterr().err


def test_a_state_with_no_test_is_refused() -> None:
    with pytest.raises(ContinuousError, match="no A/B test in this state"):
        local_test({"champion": {"name": "a"}, "challenger": None})


def test_epochs_are_cut_at_the_moment_replayed(demo: Path) -> None:
    test = local_test(_state(demo), last=True)
    [window] = test.windows
    assert windows_until(test.windows, test.started) == []
    halfway = test.started + (test.ended - test.started) / 2  # type: ignore[operator]
    [cut] = windows_until(test.windows, halfway)
    assert cut.end == halfway and cut.hours == pytest.approx(window.hours / 2)


def test_a_running_test_comes_first_unless_the_last_one_is_asked_for(demo: Path) -> None:
    state = _state(demo)
    running = local_test(state)
    assert running.ended is None and running.challenger != "nayru-v3"
    assert local_test(state, last=True).challenger == "nayru-v3"


def test_without_matplotlib_the_report_says_what_to_install(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    test = local_test(_state(demo), last=True)
    with UsageLogger(str(demo / "usage.db")) as logger:
        snapshots = replay(logger.store, test, now=utc_now(), points=4)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ContinuousError, match=r"pip install 'afs-continuous\[report\]'"):
        figure(test, snapshots)
    with pytest.raises(ContinuousError, match=r"pip install 'afs-continuous\[report\]'"):
        render_png(test, snapshots)  # what the command calls


@pytest.mark.parametrize(
    "title", ["price $x^$ of a test", "n" * 253], ids=["dollars", "a-253-character-name"]
)
def test_any_test_name_gives_a_picture_and_a_file(demo: Path, tmp_path: Path, title: str) -> None:
    from dataclasses import replace as replaced

    test = replaced(local_test(_state(demo), last=True), title=title)
    with UsageLogger(str(demo / "usage.db")) as logger:
        png, page = write_report(logger.store, test, tmp_path, now=utc_now(), points=4)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and page.exists()
    assert len(png.name) <= 130


def test_the_statistics_guide_shows_a_report() -> None:
    from tests.docs_examples import ROOT, section

    text = section(ROOT / "docs" / "statistics.md", "Seeing a test")
    assert "![the demo's A/B test over time](abtest-report.png)" in text
    assert (ROOT / "docs" / "abtest-report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_running_test_is_drawn_to_its_last_record_and_titled_so(demo: Path) -> None:
    """The demo's clock is simulated: its running test ended weeks before the wall clock."""
    running = local_test(_state(demo))
    assert running.ended is None
    with UsageLogger(str(demo / "usage.db")) as logger:
        snapshots = replay(logger.store, running, now=utc_now(), points=4)
        last = max(r.timestamp for r in logger.get_records(limit=None)
                   if r.model in (running.champion, running.challenger))  # fmt: skip
    assert snapshots[-1].at == parse_timestamp(last)
    assert snapshots[-1].hours < 24
    title = figure(running, snapshots).get_suptitle()
    assert "(running; to its last record" in title
