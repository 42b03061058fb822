"""Usage logging: the seed's ``UsageDatabase`` and ``UsageLogger``.

Both validate every value before anything reaches the store, so a bad record raises
:class:`~afs.continuous.errors.InvalidFieldError` and leaves the database untouched; the
original silently dropped such records while still returning an id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from afs.continuous.errors import InvalidBatchError, InvalidFieldError
from afs.continuous.records import (
    MAX_FEEDBACK_TEXT_CHARS,
    MAX_NAME_CHARS,
    UsageRecord,
    check_feedback,
    check_latency_ms,
    check_limit,
    check_optional_text,
    check_quality_score,
    check_record_id,
    check_text,
    check_token_count,
    compute_context_hash,
    compute_dedupe_hash,
    new_record_id,
)
from afs.continuous.scoring import QualityScorer
from afs.continuous.store import DEFAULT_DB_PATH, RecordQuery, UsageStore, open_store
from afs.continuous.store.base import IdFactory
from afs.continuous.timeutil import Clock, format_timestamp, parse_timestamp, utc_now

_RECORD_KEYS = frozenset(UsageRecord.__dataclass_fields__) | {"context", "created_at"}


def _optional_since(value: datetime | str | None, field: str = "since") -> datetime | None:
    return None if value is None else parse_timestamp(value, field=field)


def validated_record(record: UsageRecord, *, clock: Clock = utc_now) -> UsageRecord:
    """A checked, normalised copy of ``record`` (UTC timestamp, hashes filled in).

    An empty ``id`` is kept empty: the store assigns a fresh one.
    """
    if record.id:
        check_record_id(record.id)
    timestamp = (
        format_timestamp(clock())
        if record.timestamp in (None, "")
        else format_timestamp(parse_timestamp(record.timestamp))
    )
    query = check_text("query", record.query)
    response = check_text("response", record.response)
    user_feedback = record.user_feedback
    if user_feedback is not None:
        check_feedback(user_feedback, field="user_feedback")
    dedupe_hash = record.dedupe_hash
    if dedupe_hash is None:
        dedupe_hash = compute_dedupe_hash(query, response)
    return UsageRecord(
        id=record.id or "",
        timestamp=timestamp,
        query=query,
        response=response,
        model=check_text("model", record.model, max_chars=MAX_NAME_CHARS),
        expert=check_optional_text("expert", record.expert, max_chars=MAX_NAME_CHARS),
        latency_ms=check_latency_ms(record.latency_ms),
        token_count=check_token_count(record.token_count),
        quality_score=check_quality_score(record.quality_score),
        user_feedback=user_feedback,
        feedback_text=check_optional_text(
            "feedback_text", record.feedback_text, max_chars=MAX_FEEDBACK_TEXT_CHARS
        ),
        context_hash=check_optional_text(
            "context_hash", record.context_hash, max_chars=MAX_NAME_CHARS
        ),
        dedupe_hash=check_optional_text("dedupe_hash", dedupe_hash, max_chars=MAX_NAME_CHARS),
    )


def record_from_mapping(data: Mapping[str, Any]) -> UsageRecord:
    """A record from user data (an import line, an API payload); unknown keys are errors."""
    if not isinstance(data, Mapping):
        raise InvalidFieldError("record", data, "must be a JSON object / mapping")
    unknown = sorted(set(data) - _RECORD_KEYS)
    if unknown:
        raise InvalidFieldError(unknown[0], data[unknown[0]], "is not a usage record field")
    for name in ("query", "response", "model"):
        if name not in data:
            raise InvalidFieldError(name, None, "is required")
    values = {k: v for k, v in data.items() if k in UsageRecord.__dataclass_fields__}
    values.setdefault("id", "")
    values.setdefault("timestamp", "")
    if "context" in data and data.get("context_hash") is None:
        values["context_hash"] = compute_context_hash(data["context"])
    return UsageRecord(**values)


class UsageDatabase:
    """Usage records in a store (SQLite by default), with validation on every write."""

    def __init__(
        self,
        db_path: str | Path = DEFAULT_DB_PATH,
        *,
        store: UsageStore | None = None,
        clock: Clock = utc_now,
        id_factory: IdFactory = new_record_id,
    ) -> None:
        self.db_path = db_path
        self.store = store if store is not None else open_store(db_path, id_factory=id_factory)
        self._clock = clock

    def insert(self, record: UsageRecord) -> str:
        """Insert one record and return its id (a fresh one if ``record.id`` is empty)."""
        return self.store.insert([validated_record(record, clock=self._clock)])[0]

    def insert_many(self, records: Iterable[UsageRecord]) -> list[str]:
        """Insert records in one transaction: all of them, or none if any is invalid."""
        checked = []
        for index, record in enumerate(records):
            try:
                checked.append(validated_record(record, clock=self._clock))
            except InvalidFieldError as exc:
                raise InvalidBatchError(index, exc) from exc
        return self.store.insert(checked) if checked else []

    def update_feedback(
        self, record_id: str, feedback: int, feedback_text: str | None = None
    ) -> bool:
        """Set a record's feedback; False if no record has that id."""
        check_record_id(record_id)
        check_feedback(feedback)
        text = check_optional_text(
            "feedback_text", feedback_text, max_chars=MAX_FEEDBACK_TEXT_CHARS
        )
        return self.store.update_feedback(record_id, feedback, text, self._clock())

    def update_quality_score(self, record_id: str, quality_score: float | None) -> bool:
        """Set (or, with None, clear) a record's quality score; False for an unknown id."""
        check_record_id(record_id)
        return self.store.update_quality_score(record_id, check_quality_score(quality_score))

    def get(self, record_id: str) -> UsageRecord | None:
        return self.store.get(check_record_id(record_id))

    def iter_query(
        self,
        since: datetime | str | None = None,
        model: str | None = None,
        min_quality: float | None = None,
        with_feedback_only: bool = False,
        limit: int | None = None,
        *,
        until: datetime | str | None = None,
        expert: str | None = None,
        feedback_since: datetime | str | None = None,
        newest_first: bool = True,
    ) -> Iterator[UsageRecord]:
        """Stream matching records, newest first unless told otherwise."""
        query = RecordQuery(
            since=_optional_since(since),
            until=_optional_since(until, "until"),
            model=model,
            expert=expert,
            min_quality=check_quality_score(min_quality, field="min_quality"),
            with_feedback_only=bool(with_feedback_only),
            feedback_since=_optional_since(feedback_since, "feedback_since"),
            limit=check_limit(limit),
            newest_first=newest_first,
        )
        return self.store.iter_records(query)

    def query(
        self,
        since: datetime | str | None = None,
        model: str | None = None,
        min_quality: float | None = None,
        with_feedback_only: bool = False,
        limit: int | None = None,
    ) -> list[UsageRecord]:
        """Matching records as a list, newest first (use ``iter_query`` for big results)."""
        return list(self.iter_query(since, model, min_quality, with_feedback_only, limit))

    def get_statistics(
        self,
        since: datetime | str | None = None,
        *,
        until: datetime | str | None = None,
        model: str | None = None,
        expert: str | None = None,
    ) -> dict[str, Any]:
        stats = self.store.statistics(
            since=_optional_since(since),
            until=_optional_since(until, "until"),
            model=model,
            expert=expert,
        )
        return stats.as_dict()

    def count_new_samples(
        self, since: datetime | str | None = None, min_quality: float = 0.5
    ) -> int:
        """Scored records since ``since`` with quality at least ``min_quality``."""
        checked = check_quality_score(min_quality, field="min_quality")
        return self.store.count_new_samples(_optional_since(since), checked or 0.0)

    def deduplicate(self, dry_run: bool = False) -> int:
        """Delete all but the best record of each duplicate group; return how many."""
        return self.store.deduplicate(dry_run=dry_run)

    def close(self) -> None:
        self.store.close()


class UsageLogger:
    """Log model usage and feedback (see the seed document, "Basic Usage Logging").

    ``quality_score`` left out means "unscored": stored as NULL and left out of quality
    averages, unless a ``scorer`` is given, which then scores the record as it is logged.
    """

    def __init__(
        self,
        db_path: str | Path = DEFAULT_DB_PATH,
        *,
        scorer: QualityScorer | None = None,
        clock: Clock = utc_now,
        id_factory: IdFactory = new_record_id,
        store: UsageStore | None = None,
    ) -> None:
        self.db_path = db_path
        self.db = UsageDatabase(db_path, store=store, clock=clock, id_factory=id_factory)
        self.scorer = scorer
        self._clock = clock

    @property
    def store(self) -> UsageStore:
        return self.db.store

    def log(
        self,
        query: str,
        response: str,
        model: str,
        expert: str | None = None,
        latency_ms: float = 0,
        quality_score: float | None = None,
        token_count: int | None = None,
        context: Any = None,
        *,
        user_feedback: int | None = None,
        feedback_text: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> str:
        """Record one exchange and return its id; raises on invalid input, writing nothing."""
        record = self._build(
            query, response, model, expert, latency_ms, quality_score, token_count, context,
            user_feedback, feedback_text, timestamp,
        )
        return self.db.insert(record)

    def log_many(self, records: Iterable[Mapping[str, Any] | UsageRecord]) -> list[str]:
        """Log many records in one transaction: all of them or, on any invalid one, none.

        Mappings take the same keys as :meth:`log` (``query``, ``response``, ``model``,
        ``user_feedback``…) plus optional ``id`` and ``timestamp``; unknown keys are errors.
        """
        built = []
        for index, item in enumerate(records):
            try:
                record = item if isinstance(item, UsageRecord) else record_from_mapping(item)
                if record.quality_score is None and self.scorer is not None:
                    record.quality_score = self._score(record.query, record.response)
            except InvalidFieldError as exc:
                raise InvalidBatchError(index, exc) from exc
            built.append(record)
        return self.db.insert_many(built)

    def _build(
        self,
        query: Any,
        response: Any,
        model: Any,
        expert: Any,
        latency_ms: Any,
        quality_score: Any,
        token_count: Any,
        context: Any,
        user_feedback: Any,
        feedback_text: Any,
        timestamp: datetime | str | None,
    ) -> UsageRecord:
        if quality_score is None and self.scorer is not None:
            quality_score = self._score(check_text("query", query), check_text("response", response))
        return UsageRecord(
            id="",
            timestamp=format_timestamp(self._clock() if timestamp is None else parse_timestamp(timestamp)),
            query=query,
            response=response,
            model=model,
            expert=expert,
            latency_ms=latency_ms,
            token_count=token_count,
            quality_score=quality_score,
            user_feedback=user_feedback,
            feedback_text=feedback_text,
            context_hash=compute_context_hash(context),
        )

    def _score(self, query: str, response: str) -> float:
        assert self.scorer is not None
        return check_quality_score(self.scorer.score(query, response), field="scorer result") or 0.0

    def record_feedback(
        self, record_id: str, feedback: int, feedback_text: str | None = None
    ) -> bool:
        """Record thumbs up (1), neutral (0) or down (-1); False if the id is unknown."""
        return self.db.update_feedback(record_id, feedback, feedback_text)

    def update_quality_score(self, record_id: str, quality_score: float | None) -> bool:
        return self.db.update_quality_score(record_id, quality_score)

    def get_records(
        self,
        since: datetime | str | None = None,
        model: str | None = None,
        min_quality: float | None = None,
        with_feedback_only: bool = False,
        limit: int | None = None,
        **filters: Any,
    ) -> Iterator[UsageRecord]:
        """Stream records, newest first. Extra keyword filters: ``until``, ``expert``,
        ``feedback_since`` (feedback that arrived since then), ``newest_first``."""
        return self.db.iter_query(since, model, min_quality, with_feedback_only, limit, **filters)

    def get_statistics(
        self,
        since: datetime | str | None = None,
        *,
        until: datetime | str | None = None,
        model: str | None = None,
        expert: str | None = None,
    ) -> dict[str, Any]:
        """Totals, feedback counts and averages; see :meth:`UsageStatistics.as_dict`."""
        return self.db.get_statistics(since, until=until, model=model, expert=expert)

    def score_unscored(self, scorer: QualityScorer | None = None, *, batch_size: int = 500) -> int:
        """Give a quality score to every record that has none; return how many were scored."""
        active = scorer or self.scorer
        if active is None:
            from afs.continuous.scoring import HeuristicScorer

            active = HeuristicScorer()
        scored = 0
        for batch in self.store.iter_unscored(batch_size):
            results = [
                (rid, check_quality_score(active.score(q, r), field="scorer result") or 0.0)
                for rid, q, r in batch
            ]
            scored += self.store.set_quality_scores(results)
        return scored

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> UsageLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
