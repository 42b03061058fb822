"""Usage logging: the seed's ``UsageDatabase`` and ``UsageLogger``.

Both validate every value before anything reaches the store, so a bad record raises
:class:`~afs.continuous.errors.InvalidFieldError` and leaves the database untouched; the
original silently dropped such records while still returning an id.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from afs.continuous.conversations import canonical
from afs.continuous.errors import InvalidFieldError
from afs.continuous.privacy.settings import RedactionError
from afs.continuous.record_checks import check_correction
from afs.continuous.records import (
    MAX_FEEDBACK_TEXT_CHARS,
    RecordRow,
    UsageRecord,
    check_feedback,
    check_limit,
    check_optional_text,
    check_quality_score,
    check_record_id,
    check_text,
    compute_assignment_hash,
    compute_context_hash,
    new_record_id,
    new_record_ids,
    normalize_record,
    normalized_batch,
    normalized_copy,
    normalized_rows,
    normalized_stream,
    take_conversation,
    take_response_message,
)
from afs.continuous.scoring import Scorer
from afs.continuous.store import RecordQuery, UsageStore, open_store, resolve_target
from afs.continuous.store.base import IdFactory
from afs.continuous.timeutil import Clock, parse_timestamp, utc_now

if TYPE_CHECKING:
    from afs.continuous.buffered import BufferedUsageLogger
    from afs.continuous.privacy.redactor import Redactor


def _optional_since(value: datetime | str | None, field: str = "since") -> datetime | None:
    return None if value is None else parse_timestamp(value, field=field)


class UsageDatabase:
    """Usage records in a store, with validation on every write.

    Where: ``url`` (``postgresql://…``), else ``db_path`` (a SQLite file, or any URL),
    else the ``AFS_DATABASE_URL`` environment variable, else
    ``~/.context/training/continuous/usage.db``.
    """

    def __init__(
        self,
        db_path: str | Path | None = None,
        *,
        url: str | None = None,
        store: UsageStore | None = None,
        clock: Clock = utc_now,
        id_factory: IdFactory = new_record_id,
    ) -> None:
        self.db_path = resolve_target(db_path, url)
        self.store = store if store is not None else open_store(self.db_path, id_factory=id_factory)
        self._clock = clock

    def insert(self, record: UsageRecord) -> str:
        """Insert one record and return its id (a fresh one if ``record.id`` is empty)."""
        return self.store.insert([normalized_copy(record, now=self._clock())])[0]

    def insert_many(self, records: Iterable[UsageRecord]) -> list[str]:
        """Insert records in one transaction: all of them, or none if any is invalid."""
        checked = normalized_batch(records, now=self._clock())
        return self.store.insert(checked) if checked else []

    def update_feedback(
        self,
        record_id: str,
        feedback: int,
        feedback_text: str | None = None,
        correction: str | Mapping[str, Any] | None = None,
    ) -> bool:
        """Set a record's feedback (and its correction); False if no record has that id."""
        check_record_id(record_id)
        check_feedback(feedback)
        text = check_optional_text(
            "feedback_text", feedback_text, max_chars=MAX_FEEDBACK_TEXT_CHARS
        )
        corrected = None if correction is None else canonical(check_correction(correction))
        return self.store.update_feedback(
            record_id, feedback, text, self._clock(), correction_json=corrected
        )

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

    ``redactor`` (a :class:`~afs.continuous.privacy.Redactor`) redacts personal data and
    secrets before anything is stored or scored: the query, the response, the
    conversation and feedback text; raw values never reach the database.
    """

    def __init__(
        self,
        db_path: str | Path | None = None,
        *,
        url: str | None = None,
        scorer: Scorer | None = None,
        clock: Clock = utc_now,
        id_factory: IdFactory = new_record_id,
        store: UsageStore | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        if redactor is not None and redactor.config.operator == "drop":
            raise RedactionError(
                "the drop operator leaves records out of exports; to redact records as "
                "they are logged, use replace or hash"
            )
        self.db = UsageDatabase(db_path, url=url, store=store, clock=clock, id_factory=id_factory)
        self.db_path = self.db.db_path
        self.scorer = scorer
        self.redactor = redactor
        self._clock = clock
        self._id_factory = id_factory

    def now(self) -> datetime:
        """The logger's clock (injectable, so tests control time)."""
        return self._clock()

    def new_id(self) -> str:
        return self._id_factory()

    def new_ids(self, count: int) -> list[str]:
        """``count`` new ids; with the default factory in one draw of random bytes."""
        if self._id_factory is new_record_id:
            return new_record_ids(count)
        return [self._id_factory() for _ in range(count)]

    def _preparation(self) -> Callable[[UsageRecord], None] | None:
        """What each record needs before its checks: redaction and scoring, when asked for
        (and nothing otherwise, which lets typical records take the one-pass path)."""
        if self.redactor is None:
            return self.apply_scorer if self.scorer is not None else None
        return self._redact_and_score

    def _redact_and_score(self, record: UsageRecord) -> None:
        assert self.redactor is not None
        self.redactor.redact_record(record)
        self.apply_scorer(record)

    def apply_scorer(self, record: UsageRecord) -> None:
        """Score an unscored record with the configured scorer, if there is one."""
        if record.quality_score is None and self.scorer is not None:
            query = check_text("query", record.query)
            response = check_text("response", record.response)
            score = self.scorer.score(query, response)
            record.quality_score = check_quality_score(score, field="scorer result")

    def buffered(self, **options: Any) -> BufferedUsageLogger:
        """A :class:`~afs.continuous.buffered.BufferedUsageLogger` over this logger."""
        from afs.continuous.buffered import BufferedUsageLogger

        return BufferedUsageLogger(self, **options)

    @property
    def store(self) -> UsageStore:
        return self.db.store

    def build_record(
        self,
        query: str | None,
        response: str | Mapping[str, Any],
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
        is_error: bool = False,
        assignment_key: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> UsageRecord:
        """The checked record :meth:`log` would write (scored if a scorer is set; no id yet)."""
        if messages is not None and context is not None:
            raise InvalidFieldError(
                "context", context, "cannot be given with messages (the conversation is the "
                "context)",
            )  # fmt: skip
        record = UsageRecord(
            "",
            "" if timestamp is None else timestamp,  # type: ignore[arg-type]  # normalised below
            query or "",
            response,  # type: ignore[arg-type]  # a message is taken below
            model,
            expert,
            latency_ms,
            token_count,
            quality_score,
            user_feedback,
            feedback_text,
            compute_context_hash(context),
            None,
            is_error,
            compute_assignment_hash(assignment_key),
            None,
            None,
            messages,
            tools,
        )
        if isinstance(response, Mapping):  # an assistant message: tool calls, a refusal
            record.response, record.response_message = "", dict(response)
            take_response_message(record)
        if messages is not None or tools is not None:
            take_conversation(record)  # the query a scorer reads may come from it
        if self.redactor is not None:
            self.redactor.redact_record(record)
        self.apply_scorer(record)
        return normalize_record(record, now=self._clock())

    def build_rows(self, items: Iterable[Mapping[str, Any] | UsageRecord]) -> list[RecordRow]:
        """The checked records :meth:`log_many` would write, as rows with their dedupe
        hashes deferred (see :func:`~afs.continuous.records.normalized_rows`), or
        InvalidBatchError."""
        return normalized_rows(items, now=self._clock(), prepare=self._preparation())

    def checked_records(
        self, items: Iterable[Mapping[str, Any] | UsageRecord]
    ) -> Iterator[UsageRecord]:
        """The checked records :meth:`log_many` would write, one at a time:
        InvalidBatchError when the bad one is reached, so a consumer can overlap the
        checks with its own work."""
        return normalized_stream(items, now=self._clock(), prepare=self._preparation())

    def log(
        self,
        query: str | None,
        response: str | Mapping[str, Any],
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
        is_error: bool = False,
        assignment_key: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """Record one exchange and return its id; raises on invalid input, writing nothing.

        ``assignment_key``: the key a sticky A/B assignment routed by (``route_request(
        key=…)``), stored hashed; an A/B test with the key as its unit needs it.

        ``messages``: the conversation the response was given in (OpenAI chat messages:
        system prompt, earlier turns, tool calls and results), and ``tools`` the tool
        definitions offered; ``query`` may then be None (it is the last user turn).
        ``response`` may be an assistant message (``{"role": "assistant", "content": None,
        "tool_calls": [...]}``, a refusal): it is kept as it is."""
        record = self.build_record(
            query, response, model, expert, latency_ms, quality_score, token_count, context,
            user_feedback=user_feedback, feedback_text=feedback_text, timestamp=timestamp,
            is_error=is_error, assignment_key=assignment_key, messages=messages, tools=tools,
        )  # fmt: skip
        return self.store.insert([record])[0]

    def log_chat(
        self,
        request: Any,
        response: Any,
        *,
        model: str | None = None,
        expert: str | None = None,
        latency_ms: float | None = None,
        assignment_key: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> list[str]:
        """Record an OpenAI chat request and its response, as sent and received; the ids
        of the records, one per choice (``n > 1`` gives several).

        ``request`` is what was sent (a dict, or the SDK's params); ``response`` what came
        back: a dict, the SDK's ``ChatCompletion``, or a stream (its chunks, or its SSE
        text), assembled as the SDK assembles one. The conversation and the tools are
        kept; ``model`` names the arm, else the request's model, else the response's.
        The same mapping as the collector's ``/v1/openai``; ``ValueError`` saying what is
        wrong when a body is not one of those, ``InvalidBatchError`` when a record made
        from them breaks a rule (a message of the conversation, say)."""
        from afs.continuous.chat import chat_records  # the collector's; imported on use
        from afs.continuous.collector.payloads import PayloadError

        extra = {"expert": expert, "latency_ms": latency_ms, "assignment_key": assignment_key,
                 "timestamp": timestamp}  # fmt: skip
        try:
            records = chat_records(request, response, model=model, extra=extra)
        except PayloadError as exc:
            raise ValueError(f"log_chat: {exc}") from None
        return self.log_many(records)

    def log_many(
        self,
        records: Iterable[Mapping[str, Any] | UsageRecord],
        *,
        skip_existing: Container[str] = frozenset(),
    ) -> list[str]:
        """Log many records in one transaction: all of them or, on any invalid one, none.

        Mappings take the same keys as :meth:`log` (``query``, ``response``, ``model``,
        ``user_feedback``…) plus optional ``id`` and ``timestamp``; unknown keys are errors.
        Returns the ids written: a record whose id is in ``skip_existing`` and stored
        already is skipped (ids derived from content, as ``import`` gives id-less lines);
        any other id stored already is an error.
        """
        # checked as the store consumes them: PostgreSQL streams them into COPY
        return self.store.insert(self.checked_records(records), skip_existing=skip_existing)

    def record_feedback(
        self,
        record_id: str,
        feedback: int,
        feedback_text: str | None = None,
        correction: str | Mapping[str, Any] | None = None,
    ) -> bool:
        """Record thumbs up (1), neutral (0) or down (-1); False if the id is unknown.

        ``correction``: the answer the model should have given (its text, or an assistant
        message), from the user or an expert; preference exports (``dpo``, ``kto``) learn
        from it."""
        if self.redactor is not None:
            if isinstance(feedback_text, str):
                feedback_text = self.redactor.redact_text(feedback_text)[0]
            if correction is not None:
                message = check_correction(correction)
                correction = self.redactor.redact_message(message, [])
        return self.db.update_feedback(record_id, feedback, feedback_text, correction)

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

    def score_unscored(self, scorer: Scorer | None = None, *, batch_size: int = 500) -> int:
        """Give a quality score to every record that has none; return how many were scored."""
        active = scorer or self.scorer
        if active is None:
            from afs.continuous.scoring import HeuristicScorer

            active = HeuristicScorer()
        scored = 0
        pending: list[tuple[str, str, str]] = []
        many = getattr(active, "score_many", None)  # a model scores a batch at once

        def flush() -> int:
            pairs = [(query, response) for _, query, response in pending]
            scores = many(pairs) if many is not None else [active.score(*p) for p in pairs]
            checked = [
                (record_id, check_quality_score(score, field="scorer result") or 0.0)
                for (record_id, _, _), score in zip(pending, scores, strict=True)
            ]
            pending.clear()
            return self.store.set_quality_scores(checked)

        for item in self.store.iter_unscored():
            pending.append(item)
            if len(pending) >= batch_size:
                scored += flush()
        return scored + (flush() if pending else 0)

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
