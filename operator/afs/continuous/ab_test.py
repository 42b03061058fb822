"""A/B testing of model versions (the seed's ``ABTestManager``).

State (champion, challenger, traffic split, history of retired versions) lives in one
JSON file, written atomically under a file lock and re-read when another process changed
it, so a promotion made by the loop is seen by every server that routes requests.
Metrics are computed per version from that version's own usage records.
"""

from __future__ import annotations

import fcntl
import json
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from afs.continuous.ab_models import (  # re-exported: callers import them from here
    ABTestResult as ABTestResult,
    ModelStatus as ModelStatus,
    ModelVersion as ModelVersion,
    TrafficSplit as TrafficSplit,
    check_weight,
)
from afs.continuous.atomic import atomic_file
from afs.continuous.config import ABTestConfig
from afs.continuous.core import abtest as core
from afs.continuous.core.decision import Epoch, EpochWindow, VerdictKind, judge
from afs.continuous.epoch_statistics import measure_epochs as measure_epochs  # re-exported
from afs.continuous.errors import ContinuousError, InvalidFieldError
from afs.continuous.logger import UsageDatabase, UsageLogger
from afs.continuous.records import check_text
from afs.continuous.store import is_postgres_url
from afs.continuous.store.base import UsageStatistics, database_identity
from afs.continuous.timeutil import Clock, format_timestamp, parse_timestamp, utc_now

DEFAULT_STATE_FILE = "~/.context/training/continuous/ab_test_state.json"
_STATE_VERSION = 1
_BINDING = ("id", "name")  # of the database a state belongs to

__all__ = [
    "ABTestConfig",
    "ABTestManager",
    "ABTestResult",
    "ModelStatus",
    "ModelVersion",
    "TrafficSplit",
]


class ABTestManager:
    """Deploys challengers, routes requests, compares versions, promotes or rolls back."""

    def __init__(
        self,
        usage_logger: UsageLogger | UsageDatabase | None = None,
        config: ABTestConfig | None = None,
        *,
        state_file: str | Path | None = None,
        output_dir: str | Path | None = None,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self._usage_logger = usage_logger
        self.config = config if config is not None else ABTestConfig()
        if state_file is None:
            state_file = (
                Path(output_dir).expanduser() / "ab_test_state.json"
                if output_dir is not None
                else DEFAULT_STATE_FILE
            )
        self.state_file = Path(state_file).expanduser()
        self._clock = clock
        self._rng = rng or random.Random()
        self._loaded_stamp: tuple[int, int] | None = None
        self.champion: ModelVersion | None = None
        self.challenger: ModelVersion | None = None
        self.traffic_split = TrafficSplit(1.0, 0.0)
        self.history: list[ModelVersion] = []
        self.epochs: list[dict[str, Any]] = []  # {"start": iso, "challenger_share": w}
        self.last_test: dict[str, Any] | None = None
        """The test that ended last: its arms, epochs, start, end and verdict (what
        ``afs-continuous abtest report`` draws once the live state has moved on)."""
        self.last_result: ABTestResult | None = None
        #: the database the state belongs to ({"id", "name"}): its records are the test's
        self.database: dict[str, str] | None = None
        self._identity: str | None = None
        self._refresh()

    @property
    def usage_logger(self) -> UsageLogger | UsageDatabase:
        if self._usage_logger is None:
            self._usage_logger = UsageLogger()
            self._check_database()
        return self._usage_logger

    # --- the database the state belongs to ------------------------------------------

    def _database_identity(self, *, create: bool) -> str | None:
        if self._identity is None and self._usage_logger is not None:
            store = self._usage_logger.store
            self._identity = database_identity(store, create=create, at=self._clock())
        return self._identity

    def _check_database(self) -> None:
        """Refuse to judge one database's test by another's records: a state file found
        by a loop's output directory may sit beside a different ``--db``."""
        if self.database is None or self._usage_logger is None:
            return  # written before states were bound, or nothing to compare with yet
        if self._database_identity(create=False) == self.database["id"]:
            return
        raise ContinuousError(
            f"{self.state_file} holds the A/B test of another database "
            f"({self.database['name']}), not {self._database_name()}; use that database, "
            "or give this one a state file of its own (--output-dir, or state_file=); "
            "move the file away to start afresh"
        )

    def _bind(self) -> None:
        if self._usage_logger is None or self.database is not None:
            return
        identity = self._database_identity(create=True)
        assert identity is not None
        self.database = {"id": identity, "name": self._database_name()}

    def _database_name(self) -> str:
        target = self.usage_logger.db_path
        return "PostgreSQL" if is_postgres_url(target) else str(Path(target).resolve())

    # --- state file ---------------------------------------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.state_file.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        """Re-read the state file if someone (maybe another process) changed it."""
        stamp = self._stamp()
        if stamp is None or stamp == self._loaded_stamp:
            return
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ContinuousError(f"{self.state_file}: corrupt A/B state ({exc})") from exc
        if not isinstance(data, dict):
            raise ContinuousError(f"{self.state_file}: corrupt A/B state (not a JSON object)")
        version = data.get("version", _STATE_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ContinuousError(
                f"{self.state_file}: corrupt A/B state (version {version!r} is not a number)"
            )
        if version > _STATE_VERSION:
            raise ContinuousError(f"{self.state_file}: written by a newer afs-continuous")
        try:
            self.champion = _version_or_none(data.get("champion"))
            self.challenger = _version_or_none(data.get("challenger"))
            split = data.get("traffic_split") or {}
            self.traffic_split = TrafficSplit(
                split.get("champion_weight", 1.0), split.get("challenger_weight", 0.0)
            )
            self.history = [ModelVersion.from_dict(v) for v in data.get("history", [])]
            self.epochs = list(data.get("epochs", []))
            last = data.get("last_test")
            self.last_test = dict(last) if isinstance(last, dict) else None
            bound = data.get("database")
            if bound is not None and not (
                isinstance(bound, dict) and all(isinstance(bound.get(k), str) for k in _BINDING)
            ):
                raise ValueError(f"database {bound!r} is not an id and a name")
            self.database = bound
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ContinuousError(f"{self.state_file}: corrupt A/B state ({exc!r})") from exc
        self._check_database()
        self._loaded_stamp = stamp

    def _save(self) -> None:
        self._bind()
        data = {
            "version": _STATE_VERSION,
            "database": self.database,
            "champion": None if self.champion is None else self.champion.to_dict(),
            "challenger": None if self.challenger is None else self.challenger.to_dict(),
            "traffic_split": asdict(self.traffic_split),
            "history": [v.to_dict() for v in self.history],
            "epochs": self.epochs,
            "last_test": self.last_test,
            "settings": asdict(self.config.decision_settings()),
            "updated_at": format_timestamp(self._clock()),
        }
        with atomic_file(self.state_file) as handle:
            json.dump(data, handle, indent=2, default=str)
        self._loaded_stamp = self._stamp()

    @contextmanager
    def _change(self) -> Iterator[None]:
        """Read-modify-write under an exclusive lock, so two processes never lose updates."""
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.state_file.with_name(self.state_file.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._refresh()
                yield
                self._save()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- versions -----------------------------------------------------------------

    def _new_version(
        self, name: str, path: str, status: ModelStatus, weight: float
    ) -> ModelVersion:
        check_text("model_name", name)
        if not isinstance(path, str | Path):
            raise InvalidFieldError("model_path", path, "must be a path")
        now = self._clock()
        return ModelVersion(
            id=f"{name}@{now.strftime('%Y%m%dT%H%M%S')}",
            name=name,
            path=str(path),
            status=status,
            traffic_weight=weight,
            created_at=format_timestamp(now),
        )

    def set_champion(self, model_name: str, model_path: str | Path = "") -> ModelVersion:
        """Make ``model_name`` the champion (the first one, or a manual override)."""
        with self._change():
            version = self._new_version(model_name, str(model_path), ModelStatus.CHAMPION, 1.0)
            if self.champion is not None:
                self._retire(self.champion)
            self.champion = version
            self._apply_split(
                TrafficSplit(1.0, 0.0) if self.challenger is None else self.traffic_split
            )
        return version

    def ensure_champion(self, model_name: str | None = None, model_path: str = "") -> None:
        """Set the first champion if there is none: ``model_name``, or else the model that
        has served the most logged traffic (the one in production today)."""
        self._refresh()
        if self.champion is not None:
            return
        if model_name is None:
            counts = self.usage_logger.store.model_counts()
            if not counts:
                return
            model_name = max(sorted(counts), key=lambda model: counts[model])
        self.set_champion(model_name, model_path)

    def deploy_challenger(
        self, model_name: str, model_path: str | Path, traffic_weight: float | None = None
    ) -> ModelVersion:
        """Start testing ``model_name`` against the champion with ``traffic_weight`` of traffic.

        Without a champion, the model serving the most logged traffic becomes champion
        (see :meth:`ensure_champion`). A challenger already under test is retired (kept in
        the history).
        """
        weight = check_weight(
            "traffic_weight",
            self.config.initial_challenger_traffic if traffic_weight is None else traffic_weight,
        )
        self.ensure_champion()
        with self._change():
            if self.champion is None:
                raise ContinuousError(
                    "no champion: no usage has been logged yet; call set_champion() first"
                )
            if model_name == self.champion.name:
                raise InvalidFieldError(
                    "model_name", model_name, "must differ from the champion's name"
                )
            version = self._new_version(model_name, str(model_path), ModelStatus.CHALLENGER, weight)
            if self.challenger is not None:
                self._retire(self.challenger)
            self.challenger = version
            self.last_result = None
            self.epochs = []
            self._apply_split(TrafficSplit.for_challenger(weight))
        return version

    def set_traffic(self, challenger_weight: float) -> TrafficSplit:
        """Change the challenger's share of traffic (routing re-draws sticky keys)."""
        split = TrafficSplit.for_challenger(challenger_weight)
        with self._change():
            if self.challenger is None:
                raise ContinuousError("no challenger under test")
            self._apply_split(split)
        return split

    def _apply_split(self, split: TrafficSplit, *, bandit: bool = False) -> None:
        """Change the weights; while a test runs, this starts a new epoch (statistics are
        compared within epochs, so a ramp cannot mix periods of different traffic).

        Epochs whose split a bandit chose from the data are marked: the promotion test
        never uses them.
        """
        if self.challenger is not None and (
            not self.epochs or self.epochs[-1]["challenger_share"] != split.challenger_weight
        ):
            self.epochs.append(
                {
                    "start": format_timestamp(self._clock()),
                    "challenger_share": split.challenger_weight,
                    "bandit": bandit,
                }
            )
        elif self.challenger is None:
            self.epochs = []
        self.traffic_split = split
        if self.champion is not None:
            self.champion.traffic_weight = split.champion_weight
        if self.challenger is not None:
            self.challenger.traffic_weight = split.challenger_weight

    def _record_end(self, *, outcome: str) -> None:
        assert self.challenger is not None
        self.last_test = {
            "champion": None if self.champion is None else self.champion.name,
            "challenger": self.challenger.name,
            "started": self.challenger.created_at,
            "ended": format_timestamp(self._clock()),
            "epochs": [dict(epoch) for epoch in self.epochs],
            "outcome": outcome,
            "settings": asdict(self.config.decision_settings()),
            "verdict": None if self.last_result is None else self.last_result.verdict,
            "reason": None if self.last_result is None else self.last_result.reason,
        }

    def _retire(self, version: ModelVersion) -> None:
        version.status = ModelStatus.RETIRED
        version.traffic_weight = 0.0
        self.history.append(version)

    def promote_challenger(self) -> ModelVersion:
        """The challenger becomes champion with all traffic; the old champion retires."""
        with self._change():
            if self.challenger is None:
                raise ContinuousError("no challenger to promote")
            self._record_end(outcome="promoted")
            if self.champion is not None:
                self._retire(self.champion)
            self.champion, self.challenger = self.challenger, None
            self.champion.status = ModelStatus.CHAMPION
            self._apply_split(TrafficSplit(1.0, 0.0))
            return self.champion

    def rollback_challenger(self) -> ModelVersion:
        """Stop the test: the challenger retires and the champion gets all traffic."""
        with self._change():
            if self.challenger is None:
                raise ContinuousError("no challenger to roll back")
            self._record_end(outcome="rolled back")
            retired = self.challenger
            self._retire(retired)
            self.challenger = None
            self._apply_split(TrafficSplit(1.0, 0.0))
            return retired

    # --- routing ------------------------------------------------------------------

    def route_request(self, key: str | None = None) -> ModelVersion | None:
        """The version that should answer a request: champion or challenger.

        With a ``key`` (user or session id) the choice is sticky while the weights hold;
        without one it is drawn at random. None while there is no champion.
        """
        self._refresh()
        if self.challenger is None:
            return self.champion
        weight = self.traffic_split.challenger_weight
        if key is None:
            to_challenger = self._rng.random() < weight
        else:
            salt = f"{self.challenger.id}:{weight}"
            to_challenger = core.routes_to_challenger(key, salt=salt, challenger_weight=weight)
        return self.challenger if to_challenger else self.champion

    # --- judgement ----------------------------------------------------------------

    def _window_start(self, window_hours: float | None) -> datetime:
        """The evaluation window opens at most ``window_hours`` ago, and never before the
        challenger was deployed; it stays open to the present."""
        hours = self.config.evaluation_window_hours if window_hours is None else window_hours
        start = self._clock() - timedelta(hours=hours)
        if self.challenger is not None:
            start = max(start, parse_timestamp(self.challenger.created_at))
        return start

    def get_model_metrics(
        self, version: ModelVersion, window_hours: float | None = None
    ) -> dict[str, Any]:
        """Metrics of ``version``'s own records in the evaluation window."""
        since = self._window_start(window_hours)
        stats = self.usage_logger.store.statistics(since=since, model=version.name)
        return core.version_metrics(stats) | {"window_start": format_timestamp(since)}

    def compare_models(self) -> ABTestResult | None:
        """Judge the running test now; None when no test is running.

        ``decision_method="sequential"`` gives a verdict that is safe to act on at any
        look (see docs/statistics.md); ``"weighted"`` applies the seed's rule.
        """
        self._refresh()
        if self.champion is None or self.challenger is None:
            return None
        now = self._clock()
        elapsed_hours = (now - parse_timestamp(self.challenger.created_at)).total_seconds() / 3600
        if self.config.routing == "thompson":
            self._thompson_update()
        if self.config.decision_method == "sequential":
            result = self._sequential(now, elapsed_hours)
        else:
            result = self._weighted(now, elapsed_hours)
        self.last_result = result
        return result

    def _thompson_update(self) -> None:
        """Bandit routing: give the challenger the posterior probability that its mean
        quality is higher (Thompson sampling's expected share), kept within
        [min_arm_share, 1 - min_arm_share] and rounded to 5% so epochs stay few.

        Only after the first fixed-split epoch has the minimum data: that epoch is the one
        the promotion test judges; the bandit's own epochs never are.
        """
        assert self.champion is not None and self.challenger is not None
        fixed = [e for e in self._epoch_statistics(self._clock()) if e.hours > 0]
        needed = self.config.min_requests_per_arm
        if not fixed or min(fixed[0].champion.count, fixed[0].challenger.count) < needed:
            return
        since = parse_timestamp(self.challenger.created_at)
        stats = self.usage_logger.store.statistics
        a = stats(since=since, model=self.champion.name)
        b = stats(since=since, model=self.challenger.name)
        if a.quality_mean is None or b.quality_mean is None:
            return
        variance = (a.quality_variance or 0.0) / max(a.scored, 1) + (
            b.quality_variance or 0.0
        ) / max(b.scored, 1)
        z = (b.quality_mean - a.quality_mean) / math.sqrt(variance) if variance > 0 else 0.0
        probability = 0.5 * math.erfc(-z / math.sqrt(2))
        floor = self.config.min_arm_share
        share = round(min(max(probability, floor), 1 - floor) * 20) / 20
        share = min(max(share, floor), 1 - floor)
        if abs(share - self.traffic_split.challenger_weight) > 1e-9:
            with self._change():
                self._apply_split(TrafficSplit.for_challenger(share), bandit=True)

    def _epoch_statistics(self, now: datetime) -> list[Epoch]:
        """Statistics of each fixed-split epoch (bandit epochs are left out)."""
        assert self.champion is not None and self.challenger is not None
        epochs = self.epochs or [
            {
                "start": self.challenger.created_at,
                "challenger_share": self.traffic_split.challenger_weight,
            }
        ]
        windows = []
        for index, epoch in enumerate(epochs):
            if epoch.get("bandit"):
                continue
            start = parse_timestamp(epoch["start"])
            end = parse_timestamp(epochs[index + 1]["start"]) if index + 1 < len(epochs) else None
            hours = ((end or now) - start).total_seconds() / 3600
            share = float(epoch["challenger_share"])
            windows.append(EpochWindow(start, end, max(hours, 0.0), share))
        return measure_epochs(
            self.usage_logger.store,
            windows,
            champion=self.champion.name,
            challenger=self.challenger.name,
            units=self.config.unit == "key",
        )

    def _sequential(self, now: datetime, elapsed_hours: float) -> ABTestResult:
        epochs = self._epoch_statistics(now)
        verdict = judge(epochs, self.config.decision_settings(), elapsed_hours=elapsed_hours)
        champion = UsageStatistics()
        challenger = UsageStatistics()
        for epoch in epochs:
            champion += epoch.champion
            challenger += epoch.challenger
        quality = verdict.metrics.get("quality")
        base = champion.quality_mean
        improvement = quality["estimate"] / base if quality and base else 0.0
        return ABTestResult(
            champion_metrics=core.version_metrics(champion),
            challenger_metrics=core.version_metrics(challenger),
            improvement=improvement,
            winner=_WINNERS[verdict.kind],
            reason="; ".join(verdict.reasons),
            timestamp=format_timestamp(now),
            action=_ACTIONS[verdict.kind],
            elapsed_hours=elapsed_hours,
            verdict=verdict.kind.value,
            evidence=verdict.metrics,
        )

    def _weighted(self, now: datetime, elapsed_hours: float) -> ABTestResult:
        assert self.champion is not None and self.challenger is not None
        champion = self.get_model_metrics(self.champion)
        challenger = self.get_model_metrics(self.challenger)
        comparison = core.compare(champion, challenger, self.config)
        return ABTestResult(
            champion_metrics=champion,
            challenger_metrics=challenger,
            improvement=comparison.improvement,
            winner=comparison.winner,
            reason=comparison.reason,
            timestamp=format_timestamp(now),
            action=core.next_action(comparison, elapsed_hours=elapsed_hours, config=self.config),
            elapsed_hours=elapsed_hours,
            contributions=comparison.contributions,
            skipped_metrics=comparison.skipped,
        )

    def auto_promote_if_ready(self) -> bool:
        """Act on :meth:`compare_models`: promote on ``promote``; retire the challenger
        (the champion keeps all traffic) on ``rollback``, ``halt`` or ``end``.

        Returns True only when the challenger was promoted.
        """
        if not self.config.enable_auto_promotion:
            return False
        result = self.compare_models()
        if result is None:
            return False
        if result.action == "promote":
            self.promote_challenger()
            return True
        if result.action in ENDING_ACTIONS:
            self.rollback_challenger()
        return False

    def get_status(self) -> dict[str, Any]:
        self._refresh()
        return {
            "champion": None if self.champion is None else self.champion.to_dict(),
            "challenger": None if self.challenger is None else self.challenger.to_dict(),
            "traffic_split": asdict(self.traffic_split),
            "retired": len(self.history),
            "last_result": None if self.last_result is None else self.last_result.to_dict(),
        }


_WINNERS = {
    VerdictKind.PROMOTE: "challenger",
    VerdictKind.ROLLBACK: "champion",
    VerdictKind.CONTINUE: "inconclusive",
    VerdictKind.INCONCLUSIVE: "inconclusive",
    VerdictKind.HALT: "inconclusive",
}
_ACTIONS = {
    VerdictKind.PROMOTE: "promote",
    VerdictKind.ROLLBACK: "rollback",
    VerdictKind.CONTINUE: "continue",
    VerdictKind.INCONCLUSIVE: "end",
    VerdictKind.HALT: "halt",
}
#: actions after which the challenger is retired and the champion keeps all traffic
ENDING_ACTIONS = ("rollback", "halt", "end")


def _version_or_none(data: dict[str, Any] | None) -> ModelVersion | None:
    return None if data is None else ModelVersion.from_dict(data)
