"""The usage-store interface: the only contract between the library and a database.

Everything that speaks SQL lives behind :class:`UsageStore`; the logger, generator and
(later) triggers and operator call these methods and never build queries themselves.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

from afs.continuous.core.unit_statistics import UnitStatistics

# re-exported: the value type lives in core, below the stores and the decisions
from afs.continuous.core.usage_statistics import UsageStatistics as UsageStatistics
from afs.continuous.privacy.membership import DatasetEntry
from afs.continuous.records import RECORD_FIELDS, UsageRecord

#: the usage table's record columns, in :data:`RECORD_FIELDS` order (both dialects)
RECORD_COLUMNS = ", ".join(RECORD_FIELDS)


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


@dataclass
class TrainingRow:
    query: str
    response: str
    model: str
    expert: str | None
    quality_score: float | None
    user_feedback: int | None
    dedupe_hash: str | None
    conversation_hash: str | None = None
    response_json: str | None = None
    record_id: str | None = None
    assignment_hash: str | None = None
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    response_message: dict[str, Any] | None = None


def log_latency(latency_ms: float | None) -> float | None:
    """The latency's log; None when it is not known (None) or 0 (taken as not measured)."""
    return math.log(latency_ms) if latency_ms is not None and latency_ms > 0 else None


#: where records live when nothing names a database (the seed document's default)
DEFAULT_DB_PATH = "~/.context/training/continuous/usage.db"

#: how ``put_state`` treats a key that has a value: replace it, or keep it
STATE_ON_CONFLICT = {
    True: "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
    "updated_at = excluded.updated_at",
    False: "ON CONFLICT (key) DO NOTHING",
}


class UsageStore(Protocol):
    """A place where usage records live. One implementation per database backend."""

    def insert(
        self,
        records: Iterable[UsageRecord],
        *,
        reassignable: Sequence[bool] | None = None,
        skip_existing: Container[str] = frozenset(),
    ) -> list[str]:
        """Insert records atomically; records with an empty ``id`` get a new one.

        ``records`` may be lazy; an exception it raises aborts the insert and nothing is
        written.

        Returns the ids written, in input order (also set on the records). A colliding id
        is replaced when it is reassignable (by default: when the store generated it); a
        record whose id is in ``skip_existing`` and stored already is left out (an id
        derived from the record's content: it *is* that record); otherwise
        ``InvalidFieldError`` is raised and nothing is written.
        """
        ...

    def update_feedback(
        self,
        record_id: str,
        feedback: int,
        feedback_text: str | None,
        at: datetime,
        *,
        correction_json: str | None = None,
    ) -> bool:
        """Set a record's feedback (and, with ``correction_json``, the answer it should
        have given, as an assistant message in JSON) in one transaction; False if the id
        is unknown."""
        ...

    def corrections(self, record_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Corrections by record id (of ``record_ids``, or all of them)."""
        ...

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

    def unit_statistics(
        self, *, since: datetime, until: datetime | None, model: str
    ) -> UnitStatistics:
        """Statistics of the units (assignment keys) of ``model``'s records in the window,
        for an A/B test whose unit is the key."""
        ...

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

    def put_state(
        self, key: str, value: dict[str, Any], *, at: datetime, replace: bool = True
    ) -> None:
        """Store ``value`` under ``key``; with ``replace=False`` only if the key has none
        (the first of two racing writers wins)."""
        ...

    def drop_before(self, cutoff: datetime, *, archive: Path | None = None) -> dict[str, Any]:
        """Remove records older than ``cutoff``; with ``archive``, append them first to a
        gzipped JSON Lines file. Returns ``dropped_partitions`` and ``trimmed_partitions``
        (PostgreSQL's tables dropped whole, and emptied of the old days only),
        ``removed_records``, ``archived_records``."""
        ...

    def record_dataset(self, entry: DatasetEntry) -> None:
        """Record an export and its members (replacing an export of the same id)."""
        ...

    def label_dataset(self, dataset_id: str, model_version: str) -> bool:
        """Name what trained on a data set; False when no such data set is recorded."""
        ...

    def iter_datasets(self) -> Iterator[DatasetEntry]: ...

    def ids_for_assignment(self, assignment_hash: str) -> list[str]: ...

    def existing_ids(self, ids: Sequence[str]) -> list[str]: ...

    def erase_records(self, ids: Sequence[str]) -> dict[str, int]:
        """Delete the records and the conversation nodes only they used, in one
        transaction; ``records`` and ``conversation_nodes`` removed."""
        ...

    def schema_version(self) -> int: ...

    def close(self) -> None: ...


IdFactory = Callable[[], str]


_IDENTITY_KEY = "database_identity"


def database_identity(store: UsageStore, *, create: bool, at: datetime) -> str | None:
    """A random id the database keeps for itself (the first caller to ask with
    ``create`` makes it): state kept outside it, such as a local A/B test's file, is
    bound to this, so it is never read against another database, and it follows the
    database when a file is moved or a server renamed. None: the database has none yet."""
    found = store.get_state(_IDENTITY_KEY)
    if found is None and create:
        store.put_state(_IDENTITY_KEY, {"id": uuid.uuid4().hex}, at=at, replace=False)
        found = store.get_state(_IDENTITY_KEY)  # the first of two racing creators won
    value = None if found is None else found.get("id")
    return value if isinstance(value, str) else None


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
