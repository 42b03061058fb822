"""The usage-store interface: the only contract between the library and a database.

Everything that speaks SQL lives behind :class:`UsageStore`; the logger, generator and
(later) triggers and operator call these methods and never build queries themselves.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

from afs.continuous.records import UsageRecord


@dataclass(frozen=True)
class RecordQuery:
    """Which records to read. ``None`` means "no filter" for every field."""

    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    expert: str | None = None
    min_quality: float | None = None
    with_feedback_only: bool = False
    feedback_since: datetime | None = None
    limit: int | None = None
    newest_first: bool = True


@dataclass(frozen=True)
class TrainingSelection:
    """Which records become training samples; mirrors DataGeneratorConfig's filters.

    ``since`` admits records logged since then *and* older records whose feedback arrived
    since then.

    ``min_quality <= 0`` disables the quality filter (unscored records pass);
    otherwise only scored records at or above it pass. ``min_feedback=None`` disables
    the feedback filter; otherwise a record needs feedback ``>= min_feedback``.
    ``model``/``expert`` restrict the candidates to one model's (and expert's) records.
    """

    since: datetime | None = None
    min_quality: float = 0.0
    min_feedback: int | None = None
    deduplicate: bool = True
    max_samples: int | None = None
    model: str | None = None
    expert: str | None = None


@dataclass(frozen=True)
class SelectionCounts:
    """How a training selection splits the candidate records."""

    total_candidates: int
    filtered_by_quality: int
    filtered_by_feedback: int
    accepted: int
    distinct_accepted: int


@dataclass(frozen=True)
class TrainingRow:
    query: str
    response: str
    model: str
    expert: str | None
    quality_score: float | None
    user_feedback: int | None
    dedupe_hash: str | None


@dataclass(frozen=True)
class UsageStatistics:
    """Additive sufficient statistics of a set of records.

    Sums rather than averages, so that statistics of disjoint windows (rollup buckets,
    partitions) combine exactly with ``+``; means and variances are derived on demand.
    Latency logs are kept over records with ``latency_ms > 0`` (0 means "not measured").
    """

    count: int = 0
    scored: int = 0
    quality_sum: float = 0.0
    quality_sq_sum: float = 0.0
    latency_sum: float = 0.0
    log_latency_count: int = 0
    log_latency_sum: float = 0.0
    log_latency_sq_sum: float = 0.0
    token_sum: int = 0
    with_feedback: int = 0
    positive: int = 0
    negative: int = 0
    errors: int = 0

    def __add__(self, other: UsageStatistics) -> UsageStatistics:
        return UsageStatistics(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> UsageStatistics:
        """Build from a row in field order; SQL ``SUM`` of nothing is NULL, read as 0."""
        return cls(*((v or 0) for v in row))

    @property
    def neutral(self) -> int:
        return self.with_feedback - self.positive - self.negative

    @property
    def quality_mean(self) -> float | None:
        return self.quality_sum / self.scored if self.scored else None

    @property
    def quality_variance(self) -> float | None:
        """Unbiased sample variance, or None below two scored records."""
        return _variance(self.scored, self.quality_sum, self.quality_sq_sum)

    @property
    def latency_mean(self) -> float | None:
        """Over the records whose latency was measured (> 0): one logged without a
        latency must not pull the average towards 0 ms, as unscored records do not
        pull the quality towards 0."""
        return self.latency_sum / self.log_latency_count if self.log_latency_count else None

    @property
    def log_latency_mean(self) -> float | None:
        if not self.log_latency_count:
            return None
        return self.log_latency_sum / self.log_latency_count

    @property
    def feedback_rate(self) -> float:
        return self.with_feedback / self.count if self.count else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The seed's ``get_statistics()`` keys, plus the counts behind them.

        Averages over nothing are reported as 0.0, as the original did; ``scored`` and
        ``latency_measured`` tell whether ``avg_quality_score`` and ``avg_latency_ms``
        rest on any data at all.
        """
        return {
            "total": self.count,
            "with_feedback": self.with_feedback,
            "positive_feedback": self.positive,
            "negative_feedback": self.negative,
            "neutral_feedback": self.neutral,
            "avg_quality_score": _tidy(self.quality_mean),
            "avg_latency_ms": _tidy(self.latency_mean),
            "total_tokens": self.token_sum,
            "feedback_rate": _tidy(self.feedback_rate),
            "scored": self.scored,
            "latency_measured": self.log_latency_count,
            "errors": self.errors,
        }


def _tidy(mean: float | None) -> float:
    """A mean for people to read: 0.9, not the 0.8999999999999999 a sum of floats gives
    (12 decimals keep every digit a measurement has); 0.0 over nothing, as the seed."""
    return round(mean, 12) if mean is not None else 0.0


def _variance(n: int, total: float, sq_total: float) -> float | None:
    if n < 2:
        return None
    return max(0.0, (sq_total - total * total / n) / (n - 1))


def log_latency(latency_ms: float) -> float | None:
    return math.log(latency_ms) if latency_ms > 0 else None


class UsageStore(Protocol):
    """A place where usage records live. One implementation per database backend."""

    def insert(
        self, records: Iterable[UsageRecord], *, reassignable: Sequence[bool] | None = None
    ) -> list[str]:
        """Insert records atomically; records with an empty ``id`` get a new one.

        ``records`` may be lazy; an exception it raises aborts the insert and nothing is
        written.

        Returns the ids in input order (also set on the records). A colliding id is
        replaced when it is reassignable (by default: when the store generated it);
        otherwise ``InvalidFieldError`` is raised and nothing is written.
        """
        ...

    def update_feedback(
        self, record_id: str, feedback: int, feedback_text: str | None, at: datetime
    ) -> bool: ...

    def update_quality_score(self, record_id: str, quality_score: float | None) -> bool: ...

    def get(self, record_id: str) -> UsageRecord | None: ...

    def iter_records(self, query: RecordQuery) -> Iterator[UsageRecord]: ...

    def count_records(self, query: RecordQuery) -> int: ...

    def statistics(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        model: str | None = None,
        expert: str | None = None,
    ) -> UsageStatistics: ...

    def count_new_samples(self, since: datetime | None, min_quality: float) -> int: ...

    def selection_counts(self, selection: TrainingSelection) -> SelectionCounts: ...

    def count_training_samples(self, selection: TrainingSelection, *, cap: int) -> int:
        """Samples the selection yields (distinct, with dedupe), counting no further than cap."""
        ...

    def iter_training_rows(self, selection: TrainingSelection) -> Iterator[TrainingRow]: ...

    def iter_unscored(self) -> Iterator[tuple[str, str, str]]:
        """(id, query, response) of each record without a quality score."""
        ...

    def set_quality_scores(self, scores: Sequence[tuple[str, float]]) -> int: ...

    def deduplicate(self, *, dry_run: bool = False) -> int: ...

    def model_counts(self) -> dict[str, int]: ...

    def get_state(self, key: str) -> dict[str, Any] | None:
        """A small JSON document the loop keeps (trigger state…), or None."""
        ...

    def put_state(self, key: str, value: dict[str, Any], *, at: datetime) -> None: ...

    def drop_before(self, cutoff: datetime, *, archive: Path | None = None) -> dict[str, Any]:
        """Remove records older than ``cutoff``; with ``archive``, append them first to a
        gzipped JSON Lines file. Returns ``dropped_partitions`` and ``trimmed_partitions``
        (PostgreSQL's tables dropped whole, and emptied of the old days only),
        ``removed_records``, ``archived_records``."""
        ...

    def schema_version(self) -> int: ...

    def close(self) -> None: ...


IdFactory = Callable[[], str]


def write_archive(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records to a gzipped JSON Lines file (``afs-continuous import`` reads the
    lines back); return how many were written."""
    count = 0
    out: IO[str] | None = None
    try:
        for record in records:
            if out is None:  # no records, no file: "archived 0" names nothing on disk
                path.parent.mkdir(parents=True, exist_ok=True)
                out = gzip.open(path, "at", encoding="utf-8")  # noqa: SIM115
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    finally:
        if out is not None:
            out.close()
    return count
