"""``afs-continuous demo``'s refusals and endings: one line each, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from afs.continuous import demo
from afs.continuous.cli import main


@pytest.mark.parametrize("hours", ["0", "-5", "1001", "many"])
def test_hours_out_of_range_are_refused(capsys: pytest.CaptureFixture[str], hours: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--hours", hours])
    assert exit_info.value.code == 2
    assert "--hours" in capsys.readouterr().err


def test_a_dir_that_is_a_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notadb.txt").write_text("x")
    assert main(["demo", "--dir", str(tmp_path / "notadb.txt")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_ctrl_c_ends_with_one_line_and_status_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", interrupted)
    assert main(["demo"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_a_temporary_work_directory_is_said_to_be_gone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "run_demo", lambda *args, **kwargs: None)
    assert main(["demo"]) == 0
    assert "--dir DIR keeps it" in capsys.readouterr().out
