"""A picture of an A/B test: each metric's confidence sequence narrowing over time, the
thresholds it is judged against, the traffic split, and the verdict.

A verdict is a table of numbers; what people want to see is how the evidence grew. The
engine keeps no history of its intervals, and needs none: its statistics are a pure
function of the records, so the report replays the judgement at evenly spaced moments of
the test from the usage store, each time on the records logged until then, exactly as the
engine saw them (the same epochs, the same settings). matplotlib draws it (the ``report``
extra); the HTML page embeds the picture and the final numbers, and needs nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afs.continuous.core.decision import DecisionSettings, EpochWindow, Verdict, judge
from afs.continuous.epoch_statistics import measure_epochs
from afs.continuous.errors import ContinuousError
from afs.continuous.store import UsageStore
from afs.continuous.timeutil import format_timestamp

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: how many moments of the test are replayed (each costs a few aggregate queries)
DEFAULT_POINTS = 60


@dataclass(frozen=True)
class TestRecord:
    """What a report needs to replay a test's judgement."""

    title: str
    champion: str
    """The ``model`` the champion's records are logged under."""
    challenger: str
    started: datetime
    ended: datetime | None
    """None while the test runs (the report goes up to now)."""
    windows: list[EpochWindow]
    """Every judged epoch of the test, the last one open (``end`` None) while it runs."""
    settings: DecisionSettings
    outcome: str = ""
    """How it ended, in words ("promoted", "rolled back"), or empty."""


@dataclass(frozen=True)
class Snapshot:
    """The judgement at one moment."""

    at: datetime
    hours: float
    share: float
    """The challenger's share of traffic then (0 between epochs)."""
    verdict: Verdict


def windows_until(windows: Sequence[EpochWindow], moment: datetime) -> list[EpochWindow]:
    """The epochs as they stood at ``moment``: those begun by then, cut off there."""
    cut = []
    for window in windows:
        if window.start >= moment:
            continue
        end = moment if window.end is None or window.end > moment else window.end
        hours = max((end - window.start).total_seconds() / 3600, 0.0)
        cut.append(replace(window, end=end, hours=hours))
    return cut


def _last_record(store: UsageStore, test: TestRecord, now: datetime) -> datetime:
    """When the newer arm last logged a record (``now`` if neither did since the start)."""
    from afs.continuous.store import RecordQuery
    from afs.continuous.timeutil import parse_timestamp

    latest = test.started
    for model in (test.champion, test.challenger):
        query = RecordQuery(since=test.started, until=now, model=model, limit=1)
        for record in store.iter_records(query):
            latest = max(latest, parse_timestamp(record.timestamp))
    return latest if latest > test.started else now


def replay(
    store: UsageStore, test: TestRecord, *, now: datetime, points: int = DEFAULT_POINTS
) -> list[Snapshot]:
    """The verdict at ``points`` evenly spaced moments from the start to the end — for a
    test still running, to its last record (a simulated clock, or a quiet night, would
    otherwise stretch it to the wall clock) — each on the records logged until then."""
    if points < 2:
        raise ValueError("a report needs at least 2 points")
    end = test.ended or _last_record(store, test, now)
    span = (end - test.started).total_seconds()
    if span <= 0:
        raise ContinuousError(f"{test.title}: the test has not run yet (started {test.started})")
    snapshots = []
    for index in range(1, points + 1):
        moment = test.started + timedelta(seconds=span * index / points)
        windows = windows_until(test.windows, moment)
        hours = (moment - test.started).total_seconds() / 3600
        epochs = measure_epochs(
            store, windows, champion=test.champion, challenger=test.challenger,
            units=test.settings.unit == "key",
        )  # fmt: skip
        verdict = judge(epochs, test.settings, elapsed_hours=hours)
        current = [w for w in windows if w.end == moment]
        share = current[-1].challenger_share if current else 0.0
        snapshots.append(Snapshot(moment, hours, share, verdict))
    return snapshots


def _series(snapshots: Sequence[Snapshot], *path: str) -> list[float]:
    """One number of every snapshot's metrics (NaN where the engine had none then)."""
    values = []
    for snapshot in snapshots:
        node: Any = snapshot.verdict.metrics
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        values.append(float(node) if isinstance(node, int | float) else math.nan)
    return values


def _first_decision(snapshots: Sequence[Snapshot]) -> Snapshot | None:
    return next((s for s in snapshots if s.verdict.kind.value != "CONTINUE"), None)


def figure(test: TestRecord, snapshots: Sequence[Snapshot]) -> Figure:
    """The picture: one panel per metric, its interval over time with the thresholds,
    the error evidence against its bar, the traffic split, the verdict."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ContinuousError(
            "the report draws with matplotlib: pip install 'afs-continuous[report]'"
        ) from None
    hours = [s.hours for s in snapshots]
    s = test.settings
    drawing, axes = plt.subplots(5, 1, figsize=(9, 13), sharex=True)
    panels: list[tuple[str, str, tuple[str, ...], list[tuple[float, str]]]] = [
        ("Quality (challenger − champion)", "quality", ("estimate", "lower", "upper"),
         [(0.0, "no difference"), (s.min_effect, "minimum effect")] if s.min_effect else
         [(0.0, "no difference")]),
        ("Latency (log ratio of geometric means)", "latency", ("estimate", "lower", "upper"),
         [(0.0, "same latency"), (math.log1p(s.latency_margin), f"+{s.latency_margin:.0%}")]),
        ("Negative feedback (rate difference)", "negative_feedback",
         ("estimate", "lower", "upper"),
         [(0.0, "no difference"), (s.negative_feedback_margin, "margin")]),
    ]  # fmt: skip
    for axis, (title, key, (mid, low, high), lines) in zip(axes, panels, strict=False):
        estimate = _series(snapshots, key, mid)
        lower, upper = _series(snapshots, key, low), _series(snapshots, key, high)
        axis.fill_between(hours, lower, upper, alpha=0.25, label="confidence sequence")
        axis.plot(hours, estimate, label="estimate")
        for value, label in lines:
            axis.axhline(value, linestyle="--", linewidth=0.8, color="grey")
            axis.annotate(label, (hours[0], value), fontsize=7, color="grey")
        axis.set_title(title, fontsize=10)
    evidence = _series(snapshots, "errors", "log_evalue")
    threshold = _series(snapshots, "errors", "threshold")
    axes[3].plot(hours, evidence, label="log e-value")
    axes[3].plot(hours, threshold, linestyle="--", color="grey", label="rollback bar")
    axes[3].set_title("Errors: evidence of an excess on the challenger", fontsize=10)
    axes[4].step(hours, [100 * snap.share for snap in snapshots], where="post")
    axes[4].set_ylim(0, 100)
    axes[4].set_ylabel("% to challenger")
    axes[4].set_title("Traffic split", fontsize=10)
    axes[4].set_xlabel("hours since the test started")
    waiting = [
        snap.hours for snap in snapshots
        if snap.verdict.reasons and snap.verdict.reasons[0].startswith("not enough data")
    ]  # fmt: skip
    if waiting:  # the intervals wait for the minimum data; the exact tests do not
        for axis in axes[:3]:
            axis.axvspan(0, max(waiting), color="grey", alpha=0.12, linewidth=0)
        axes[0].annotate(
            " not enough data for the intervals", (0, 0.5), xycoords=("data", "axes fraction"),
            fontsize=8, color="grey",
        )  # fmt: skip
    decided = _first_decision(snapshots)
    if decided is not None:
        for axis in axes:
            axis.axvline(decided.hours, color="black", linewidth=1)
        axes[0].annotate(
            f" {decided.verdict.kind.value} at {decided.hours:.1f} h", (decided.hours, 0),
            xycoords=("data", "axes fraction"), fontsize=8,
        )  # fmt: skip
    axes[0].legend(fontsize=7, loc="upper left")
    final = snapshots[-1].verdict
    headline = f"{test.title}: {final.kind.value}"
    if test.outcome:
        headline += f" ({test.outcome})"
    elif test.ended is None:
        headline += f" (running; to its last record, {snapshots[-1].hours:.1f} h in)"
    # a name is text, not mathtext: "$" would start a formula (and fail to parse)
    drawing.suptitle(headline.replace("$", r"\$"), fontsize=12)
    drawing.tight_layout()
    return drawing


def render_png(test: TestRecord, snapshots: Sequence[Snapshot]) -> bytes:
    drawing = figure(test, snapshots)  # first: it says what is missing without matplotlib
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    drawing.savefig(buffer, format="png", dpi=100)
    plt.close(drawing)
    return buffer.getvalue()


def render_html(test: TestRecord, snapshots: Sequence[Snapshot], png: bytes) -> str:
    """A page that stands alone: the picture (embedded), the verdict and its reasons,
    and the final numbers."""
    final = snapshots[-1].verdict
    metrics = final.metrics
    rows = []
    for name, key in (("quality", "quality"), ("latency", "latency"),
                      ("negative feedback", "negative_feedback")):  # fmt: skip
        value = metrics.get(key)
        if isinstance(value, dict):
            rows.append((name, f"{value['estimate']:+.4f}",
                         f"[{value['lower']:+.4f}, {value['upper']:+.4f}]",
                         str(value.get("test", ""))))  # fmt: skip
    errors = metrics.get("errors")
    if isinstance(errors, dict):
        rows.append(("errors", f"log e-value {errors['log_evalue']:.2f}",
                     f"bar {errors['threshold']:.2f}", str(errors.get("test", ""))))  # fmt: skip
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in final.reasons)
    picture = base64.b64encode(png).decode("ascii")
    title = html.escape(test.title)
    ended = format_timestamp(test.ended) if test.ended else "running"
    settings = html.escape(json.dumps(metrics.get("thresholds", {}), sort_keys=True))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em}}</style>
</head><body>
<h1>{title}</h1>
<p><b>{html.escape(final.kind.value)}</b>{html.escape(f" ({test.outcome})" if test.outcome else "")}
— {html.escape(test.challenger)} against {html.escape(test.champion)},
from {html.escape(format_timestamp(test.started))} to {html.escape(ended)}.</p>
<ul>{reasons}</ul>
<img alt="each metric's confidence sequence over time" src="data:image/png;base64,{picture}">
<h2>At the end</h2>
<table><tr><th>metric</th><th>estimate</th><th>interval</th><th>test</th></tr>{table}</table>
<p>Settings: <code>{settings}</code></p>
</body></html>
"""


#: the longest file name stem written (file systems allow 255 bytes with the suffix)
MAX_STEM = 120


def write_report(
    store: UsageStore,
    test: TestRecord,
    out_dir: Path,
    *,
    now: datetime,
    points: int = DEFAULT_POINTS,
) -> tuple[Path, Path]:
    """Replay ``test`` and write ``<stem>.png`` and ``<stem>.html`` into ``out_dir``."""
    snapshots = replay(store, test, now=now, points=points)
    png = render_png(test, snapshots)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in test.title) or "abtest"
    if len(stem) > MAX_STEM:  # a name of 253 characters makes a file name too long
        digest = hashlib.sha256(test.title.encode()).hexdigest()[:12]
        stem = f"{stem[: MAX_STEM - 13]}-{digest}"
    png_path, html_path = out_dir / f"{stem}.png", out_dir / f"{stem}.html"
    png_path.write_bytes(png)
    html_path.write_text(render_html(test, snapshots, png), encoding="utf-8")
    return png_path, html_path


def local_test(
    state: dict[str, Any], settings: DecisionSettings | None = None, *, last: bool = False
) -> TestRecord:
    """The test of a local A/B state file (``ab_test_state.json``): the running one (unless
    ``last``), else the one that ended last, judged with ``settings`` (default: those it
    ran with, else the defaults)."""
    from afs.continuous.timeutil import parse_timestamp

    challenger = state.get("challenger")
    champion = state.get("champion")
    if not last and isinstance(challenger, dict) and isinstance(champion, dict):
        record: dict[str, Any] = {
            "champion": champion.get("name"), "challenger": challenger.get("name"),
            "started": challenger.get("created_at"), "ended": None,
            "epochs": state.get("epochs") or [], "outcome": "",
            "settings": state.get("settings"),
        }  # fmt: skip
    elif isinstance(state.get("last_test"), dict):
        record = state["last_test"]
    else:
        raise ContinuousError(
            "no A/B test in this state: "
            + ("none has ended" if last else "none is running and none has ended")
        )
    try:
        started = parse_timestamp(record["started"])
        ended = parse_timestamp(record["ended"]) if record.get("ended") else None
        plans = [
            (parse_timestamp(e["start"]), float(e["challenger_share"]), bool(e.get("bandit")))
            for e in record.get("epochs") or []
        ]
        champion_name, challenger_name = str(record["champion"]), str(record["challenger"])
        if settings is None:
            stored = record.get("settings")
            settings = (
                DecisionSettings(**stored) if isinstance(stored, dict) else (DecisionSettings())
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ContinuousError(f"the A/B state's test is unreadable ({exc!r})") from None
    if not plans:  # a test from before epochs were recorded: one, at its first split
        plans = [(started, settings.planned_challenger_share, False)]
    windows = []
    for index, (start, share, bandit) in enumerate(plans):
        end = plans[index + 1][0] if index + 1 < len(plans) else ended
        if bandit:  # the promotion test never judges a bandit's epochs
            continue
        hours = ((end or start) - start).total_seconds() / 3600
        windows.append(EpochWindow(start, end, max(hours, 0.0), share))
    return TestRecord(
        title=f"{challenger_name} vs {champion_name}", champion=champion_name,
        challenger=challenger_name, started=started, ended=ended, windows=windows,
        settings=settings, outcome=str(record.get("outcome") or ""),
    )  # fmt: skip
