"""The usage record, its validation rules, content hashes and record ids.

Validation is hand-written rather than delegated to a schema library because it sits on
the logging hot path (tens of thousands of records per second); every rule raises an
:class:`~afs.continuous.errors.InvalidFieldError` naming the field and the value.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from afs.continuous.errors import InvalidBatchError, InvalidFieldError
from afs.continuous.record_checks import (  # re-exported: callers import them from here
    FEEDBACK_VALUES as FEEDBACK_VALUES,
    MAX_FEEDBACK_TEXT_CHARS as MAX_FEEDBACK_TEXT_CHARS,
    MAX_LATENCY_MS as MAX_LATENCY_MS,
    MAX_NAME_CHARS as MAX_NAME_CHARS,
    MAX_TEXT_CHARS as MAX_TEXT_CHARS,
    MAX_TOKEN_COUNT as MAX_TOKEN_COUNT,
    check_feedback as check_feedback,
    check_latency_ms as check_latency_ms,
    check_limit as check_limit,
    check_optional_text as check_optional_text,
    check_quality_score as check_quality_score,
    check_record_id as check_record_id,
    check_text as check_text,
    check_token_count as check_token_count,
    take_conversation as take_conversation,
    take_response_message as take_response_message,
)
from afs.continuous.timeutil import format_timestamp, normalize_timestamp

#: how far in the future a record's timestamp may be, by default (clocks drift)
DEFAULT_MAX_CLOCK_SKEW_SECONDS = 300.0

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: an id never starts with '-': on a command line it would read as an option
_ID_FIRST = _ID_ALPHABET.replace("-", "")
_ID_SLOTS = len(_ID_FIRST) * 64
_ID_RANDOM_CHARS = 10  # 60 bits
_ID_DRAW_CHARS = 8  # 48 bits, after a draw's 2-character lane
_ID_PREFIX_SECONDS = 1


@dataclass
class UsageRecord:
    """One model query and its response, with the signals used to judge it."""

    id: str
    timestamp: str
    query: str
    response: str
    model: str
    expert: str | None = None
    latency_ms: float | None = 0
    """Milliseconds to answer; None: not known (a pair forwarded without it)."""
    token_count: int | None = 0
    quality_score: float | None = 0.0
    user_feedback: int | None = None
    feedback_text: str | None = None
    context_hash: str | None = None
    dedupe_hash: str | None = None
    is_error: bool = False
    assignment_hash: str | None = None
    """The key a sticky assignment routed by (a user, a session), hashed: the unit an A/B
    test randomised, when it was not the request."""
    conversation_hash: str | None = None
    """The conversation the response was given in (see :mod:`afs.continuous.conversations`):
    the hash of its last stored node; None for a single (query, response) exchange."""
    response_json: str | None = None
    """The response as an assistant message (JSON), when it is more than text: tool
    calls, a refusal. ``response`` then holds its text, or a line naming the calls."""
    messages: list[dict[str, Any]] | None = None
    """The conversation before the response, in the OpenAI chat format (not a column: its
    messages are stored once per distinct prefix and read back with the record)."""
    tools: list[dict[str, Any]] | None = None
    """The tool definitions offered (stored with the conversation)."""
    response_message: dict[str, Any] | None = None
    """The response as an assistant message (read from ``response_json``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageRecord:
        """Build from a mapping, ignoring keys that are not fields (e.g. ``created_at``)."""
        return cls(**{name: data[name] for name in _ALL_FIELDS if name in data})

    def compute_dedupe_hash(self) -> str:
        return compute_dedupe_hash(self.query, self.response, self.conversation_hash)


#: the record's fields that are not columns of the usage table
CONVERSATION_FIELDS = ("messages", "tools", "response_message")
RECORD_FIELDS = tuple(f.name for f in fields(UsageRecord) if f.name not in CONVERSATION_FIELDS)
"""The record's stored columns, in order (its dict keys besides :data:`CONVERSATION_FIELDS`)."""
record_values = attrgetter(*RECORD_FIELDS)
"""A record's values in :data:`RECORD_FIELDS` order, as one tuple (built in C)."""
RecordRow = tuple[Any, ...]
"""A record's values in :data:`RECORD_FIELDS` order: ``UsageRecord(*row)`` is the record."""
_ALL_FIELDS = (*RECORD_FIELDS, *CONVERSATION_FIELDS)
_MAPPING_KEYS = frozenset(RECORD_FIELDS) | {
    "context", "created_at", "assignment_key", "messages", "tools", "response_message",
}  # fmt: skip
_HASH = re.compile(r"^[0-9a-f]{32}$")
MAX_ASSIGNMENT_KEY_CHARS = 1024
_REQUIRED_KEYS = frozenset({"query", "response", "model"})


def _normalize_text(text: str) -> str:
    """Case folded, whitespace runs made one space, ends stripped.

    Printable ASCII has one whitespace character, the space, and folds as ``lower()``
    does; text of it with no double or edge space is already normalised but for case,
    which C checks find without splitting it into words (half the cost of a batch's
    hashing, for the typical single-line query).
    """
    if (
        text.isascii() and text.isprintable()
        and "  " not in text and text[:1] != " " and text[-1:] != " "
    ):  # fmt: skip
        return text.lower()
    return " ".join(text.split()).casefold()


def compute_dedupe_hash(query: str, response: str, conversation: str | None = None) -> str:
    """Hash of the exchange, insensitive to case and whitespace runs.

    Two records with the same question and answer up to formatting teach a model the
    same thing, so they count as duplicates — in the same conversation: the same last
    turn asked after different turns before it is another sample (``conversation``, the
    record's ``conversation_hash``). 128 bits of SHA-256, hex.
    """
    payload = f"{_normalize_text(query)}\x1f{_normalize_text(response)}"
    if conversation is not None:
        payload = f"{payload}\x1f{conversation}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def compute_assignment_hash(key: Any) -> str | None:
    """128 bits of SHA-256 of an assignment key (a user or session id): records of one
    user are told apart from another's without the id being stored. It is pseudonymous,
    not anonymous: whoever reads the database can confirm a guessed id, so hash a key
    that must stay secret with a secret of your own before logging it."""
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_ASSIGNMENT_KEY_CHARS:
        raise InvalidFieldError(
            "assignment_key", key,
            f"must be a non-empty string of at most {MAX_ASSIGNMENT_KEY_CHARS} characters",
        )  # fmt: skip
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def compute_context_hash(context: Any) -> str | None:
    """Hash of the context a query was answered in (a string, or JSON-able data)."""
    if context is None:
        return None
    if isinstance(context, str):
        blob = context
    else:
        try:
            blob = json.dumps(context, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise InvalidFieldError("context", context, "must be a string or JSON data") from exc
        except RecursionError:
            raise InvalidFieldError(
                "context", "…", "is nested too deeply to be JSON data"
            ) from None
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def new_record_ids(count: int, now: float | None = None) -> list[str]:
    """``count`` ids from one read of the system's random source, in ascending order.

    A draw shares its second's prefix and a *lane*: 2 more characters (12 bits) drawn
    once for it; 8 characters (48 bits) tell its ids apart. A store hands a draw out in
    order, so the records it writes in a row sit side by side in the primary-key index
    and a batch dirties a page or two of it, where ids random within the second dirtied
    one page per record (the commit then rewrites each: most of an insert's cost).
    A collision is still retried by the store, never dropped.
    """
    slot = int((time.time() if now is None else now) // _ID_PREFIX_SECONDS) % _ID_SLOTS
    lane = int.from_bytes(os.urandom(2), "big") & 0xFFF
    prefix = (
        _ID_FIRST[slot >> 6] + _ID_ALPHABET[slot & 63]
        + _ID_ALPHABET[lane >> 6] + _ID_ALPHABET[lane & 63]
    )  # fmt: skip
    text = base64.urlsafe_b64encode(os.urandom(6 * count)).decode()
    return sorted(prefix + text[i : i + _ID_DRAW_CHARS] for i in range(0, 8 * count, 8))


def new_record_id(now: float | None = None) -> str:
    """A 12-character id: 2 characters of the clock's second (mod 4032), 60 random bits.

    The prefix only makes ids written in the same second sit together in the
    primary-key index, so a batch dirties a few hundred index pages instead of one per
    record (about twice the insert rate of fully random keys). Uniqueness rests on the
    60 random bits, and a collision is retried by the store, never dropped.
    """
    slot = int((time.time() if now is None else now) // _ID_PREFIX_SECONDS) % _ID_SLOTS
    random_chars = base64.urlsafe_b64encode(os.urandom(9))[:_ID_RANDOM_CHARS].decode()
    return _ID_FIRST[slot >> 6] + _ID_ALPHABET[slot & 63] + random_chars


class ImportedIds:
    """Ids for imported records that carry none, derived from what the line says (its
    content and timestamp), so importing the same file again names the same records and
    they are recognised as stored already instead of written twice. Identical lines in
    one file are told apart by their occurrence (the first, the second …), so a file
    that logged the same exchange twice keeps both."""

    #: marks an id as derived at import (a reader of ``records`` can tell)
    PREFIX = "imp-"

    def __init__(self) -> None:
        self._seen: dict[bytes, int] = {}
        #: every id given so far; a store skips a record whose id is one of these and is
        #: stored already
        self.given: set[str] = set()

    def for_line(self, line: Mapping[str, Any]) -> str:
        # ASCII so a lone surrogate cannot break the hash (the record is refused later)
        text = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        content = hashlib.blake2b(text.encode(), digest_size=12).digest()
        occurrence = self._seen.get(content, 0)
        self._seen[content] = occurrence + 1
        digest = (
            content
            if occurrence == 0
            else hashlib.blake2b(content + occurrence.to_bytes(8, "big"), digest_size=12).digest()
        )
        record_id = self.PREFIX + base64.urlsafe_b64encode(digest).decode()
        self.given.add(record_id)
        return record_id


# --- whole records -----------------------------------------------------------------


def latest_timestamp(now: datetime) -> str:
    """The latest timestamp a record may carry: ``now`` plus the clock skew allowed
    (``AFS_MAX_CLOCK_SKEW_SECONDS``, default 300). A record dated in the future would
    count as new after every retrain and fire the sample-count trigger forever."""
    raw = os.environ.get("AFS_MAX_CLOCK_SKEW_SECONDS", "").strip()
    try:
        skew = float(raw) if raw else DEFAULT_MAX_CLOCK_SKEW_SECONDS
    except ValueError:
        skew = DEFAULT_MAX_CLOCK_SKEW_SECONDS
    if not math.isfinite(skew) or skew < 0:
        skew = DEFAULT_MAX_CLOCK_SKEW_SECONDS
    return format_timestamp(now + timedelta(seconds=min(skew, 86_400 * 365)))


def normalize_record(
    record: UsageRecord,
    *,
    now: datetime,
    latest: str | None = None,
    now_text: str | None = None,
) -> UsageRecord:
    """Check every field of ``record`` in place and fill in what is derived.

    The timestamp becomes canonical UTC text (``now`` when missing, ``now_text`` being
    ``now`` already formatted, as a batch does once; at most ``latest``, by default
    :func:`latest_timestamp`) and the dedupe hash is computed when missing. An
    empty ``id`` stays empty: the store assigns one. Raises :class:`InvalidFieldError` at
    the first broken rule.
    """
    r = record
    if not r.timestamp:
        r.timestamp = now_text if now_text is not None else format_timestamp(now)
    else:
        r.timestamp = normalize_timestamp(r.timestamp)
        limit = latest if latest is not None else latest_timestamp(now)
        if r.timestamp > limit:  # canonical UTC text compares as time
            raise InvalidFieldError(
                "timestamp", r.timestamp, "must not be later than now plus the clock skew "
                f"allowed (AFS_MAX_CLOCK_SKEW_SECONDS), {limit}",
            )  # fmt: skip
    if r.response_message is not None and r.response_json is None:
        take_response_message(r)
    if (r.messages is not None or r.tools is not None) and r.conversation_hash is None:
        take_conversation(r)
    if not _plainly_valid(r):  # the common case skips the detailed checks below
        if r.id:
            check_record_id(r.id)
        check_text("query", r.query)
        check_text("response", r.response)
        check_text("model", r.model, max_chars=MAX_NAME_CHARS)
        check_optional_text("expert", r.expert, max_chars=MAX_NAME_CHARS)
        if r.latency_ms is not None:
            check_latency_ms(r.latency_ms)
        check_token_count(r.token_count)
        check_quality_score(r.quality_score)
        if r.user_feedback is not None:
            check_feedback(r.user_feedback, field="user_feedback")
        check_optional_text("feedback_text", r.feedback_text, max_chars=MAX_FEEDBACK_TEXT_CHARS)
        check_optional_text("context_hash", r.context_hash, max_chars=MAX_NAME_CHARS)
        if r.dedupe_hash is not None:
            check_optional_text("dedupe_hash", r.dedupe_hash, max_chars=MAX_NAME_CHARS)
    if r.latency_ms is not None:
        r.latency_ms = float(r.latency_ms)
    if r.quality_score is not None:
        r.quality_score = float(r.quality_score)
    if r.dedupe_hash is None:
        r.dedupe_hash = compute_dedupe_hash(r.query, r.response, r.conversation_hash)
    if r.is_error is not False and r.is_error is not True:
        raise InvalidFieldError("is_error", r.is_error, "must be true or false")
    if r.assignment_hash is not None and (
        not isinstance(r.assignment_hash, str) or not _HASH.match(r.assignment_hash)
    ):
        raise InvalidFieldError(
            "assignment_hash", r.assignment_hash, "must be 32 lowercase hex digits (log "
            "assignment_key, which is hashed, rather than a hash of your own)",
        )  # fmt: skip
    return r


def _plainly_valid(r: UsageRecord) -> bool:
    """Whether ``r`` is the typical record (see :func:`_plain_values`) with no extras."""
    return (
        not r.id
        and r.feedback_text is None and r.context_hash is None and r.dedupe_hash is None
        and r.assignment_hash is None and r.conversation_hash is None
        and r.response_json is None
        and _plain_values(r.query, r.response, r.model, r.expert, r.latency_ms,
                          r.token_count, r.quality_score, r.user_feedback)
    )  # fmt: skip


def _plain_values(q: Any, a: Any, m: Any, e: Any, lat: Any, tok: Any, qs: Any, fb: Any) -> bool:
    """One expression that accepts the typical values: ASCII text, plain numbers.

    Anything it does not accept goes through the detailed checks, which either pass it
    (e.g. non-ASCII text) or raise the precise error; it never accepts what they reject.
    """
    return (
        type(q) is str and type(a) is str and type(m) is str
        and 0 < len(q) <= MAX_TEXT_CHARS and 0 < len(a) <= MAX_TEXT_CHARS
        and 0 < len(m) <= MAX_NAME_CHARS
        and q.isascii() and a.isascii() and m.isascii()
        and not q.isspace() and not a.isspace() and not m.isspace()
        and (e is None or (type(e) is str and e.isascii() and len(e) <= MAX_NAME_CHARS))
        and (type(lat) is float or type(lat) is int) and 0 <= lat <= MAX_LATENCY_MS
        and (qs is None or (type(qs) is float and 0.0 <= qs <= 1.0))
        and (tok is None or (type(tok) is int and 0 <= tok <= MAX_TOKEN_COUNT))
        and "\x00" not in q and "\x00" not in a and "\x00" not in m
        and (e is None or "\x00" not in e)
        and (fb is None or (type(fb) is int and -1 <= fb <= 1))
    )  # fmt: skip


#: the keys of a mapping the one-pass path takes; any other goes the general way
_PLAIN_KEYS = frozenset(
    {"query", "response", "model", "expert", "latency_ms", "token_count", "quality_score",
     "user_feedback", "is_error"}
)  # fmt: skip


def _plain_row(item: Mapping[str, Any], now_text: str, *, hashed: bool) -> RecordRow | None:
    """The typical logged mapping (no id, no timestamp, plain values) checked and made
    a row in one pass: the same rules as the general path, without building the record
    twice. None for anything else, which the general path checks and explains."""
    if type(item) is not dict or not _PLAIN_KEYS.issuperset(item):
        return None
    get = item.get
    q: Any = get("query")
    a: Any = get("response")
    m: Any = get("model")
    e = get("expert")
    lat, tok, qs, fb = (
        get("latency_ms", 0),
        get("token_count"),
        get("quality_score"),
        get("user_feedback"),
    )
    err = get("is_error", False)
    if not (err is False or err is True) or not _plain_values(q, a, m, e, lat, tok, qs, fb):
        return None
    return (
        "", now_text, q, a, m, e, float(lat), tok, qs, fb, None, None,
        compute_dedupe_hash(q, a) if hashed else None, err, None, None, None,
    )  # fmt: skip


def normalized_copy(record: UsageRecord, *, now: datetime) -> UsageRecord:
    """Like :func:`normalize_record`, leaving the caller's object untouched."""
    return normalize_record(replace(record), now=now)


def normalized_stream(
    items: Iterable[Mapping[str, Any] | UsageRecord],
    *,
    now: datetime,
    prepare: Callable[[UsageRecord], None] | None = None,
) -> Iterator[UsageRecord]:
    """Checked records built from mappings or copied from records, one at a time.

    ``prepare`` runs on each record before the checks (e.g. to score it). An invalid
    item raises :class:`InvalidBatchError` with its index when it is reached, so a
    store consuming the stream inside a transaction writes nothing.
    """
    now_text, latest = format_timestamp(now), None  # latest: for a supplied timestamp
    for index, item in enumerate(items):
        if prepare is None:
            plain = _plain_row(item, now_text, hashed=True)  # type: ignore[arg-type]
            if plain is not None:
                yield UsageRecord(*plain)
                continue
        latest = latest or latest_timestamp(now)
        try:
            record = replace(item) if isinstance(item, UsageRecord) else record_from_mapping(item)
            if record.response_message is not None and record.response_json is None:
                take_response_message(record)
            if record.messages is not None or record.tools is not None:
                take_conversation(record)  # the query a scorer reads may come from it
            if prepare is not None:
                prepare(record)
            yield normalize_record(record, now=now, latest=latest, now_text=now_text)
        except InvalidFieldError as exc:
            raise InvalidBatchError(index, exc) from exc


def normalized_batch(
    items: Iterable[Mapping[str, Any] | UsageRecord],
    *,
    now: datetime,
    prepare: Callable[[UsageRecord], None] | None = None,
) -> list[UsageRecord]:
    """All of :func:`normalized_stream`, checked before anything is written."""
    return list(normalized_stream(items, now=now, prepare=prepare))


def normalized_rows(
    items: Iterable[Mapping[str, Any] | UsageRecord],
    *,
    now: datetime,
    prepare: Callable[[UsageRecord], None] | None = None,
) -> list[RecordRow]:
    """:func:`normalized_batch` as rows, a typical record's ``dedupe_hash`` left None
    for :func:`records_from_rows` to make where it costs less.

    The collector checks records on its event loop and hands them to a writer process:
    a typical record there becomes a row straight from its mapping, never an object whose
    values are then read back out (0.4 µs a record of the loop's time), and a hash,
    which cannot fail, is made by the writer instead.
    """
    if prepare is not None:  # every record takes the general path anyway
        return [record_row(r) for r in normalized_stream(items, now=now, prepare=prepare)]
    now_text, rows = format_timestamp(now), []
    for index, item in enumerate(items):
        row = _plain_row(item, now_text, hashed=False)  # type: ignore[arg-type]
        if row is None:
            try:
                (record,) = normalized_stream([item], now=now)
            except InvalidBatchError as exc:  # its index in this batch, not in a batch of one
                raise InvalidBatchError(index, exc.cause) from exc.cause
            row = record_row(record)
        rows.append(row)
    return rows


def record_row(record: UsageRecord) -> RecordRow:
    """A record as a row; a conversation's messages and tools ride along after the
    columns (``UsageRecord(*row)`` takes them back), so its nodes can be stored with it."""
    values: RecordRow = record_values(record)
    if record.messages is None and record.tools is None:
        return values
    return (*values, record.messages, record.tools)


def fill_dedupe_hashes(records: Iterable[UsageRecord]) -> None:
    """Give each record whose ``dedupe_hash`` was deferred its hash."""
    for record in records:
        if record.dedupe_hash is None:
            record.dedupe_hash = compute_dedupe_hash(
                record.query, record.response, record.conversation_hash
            )


def records_from_rows(rows: Iterable[RecordRow]) -> list[UsageRecord]:
    """Rows of :func:`normalized_rows` as records, their deferred hashes made."""
    records = [UsageRecord(*row) for row in rows]
    fill_dedupe_hashes(records)
    return records


def record_from_mapping(data: Any) -> UsageRecord:
    """A record from user data (an import line, an API payload); unknown keys are errors.

    ``is_error`` marks a request that failed (a timeout, an exception, a refusal the
    serving layer counts as an error); A/B tests use it as a guardrail.

    Accepts the record fields plus ``context`` (hashed into ``context_hash``) and
    ``created_at`` (ignored, so exported rows can be imported back).
    """
    if not isinstance(data, Mapping):
        raise InvalidFieldError("record", data, "must be a JSON object / mapping")
    if not _MAPPING_KEYS.issuperset(data):  # one set operation; the loop finds which
        for key in data:
            if key not in _MAPPING_KEYS:
                raise InvalidFieldError(str(key), data[key], "is not a usage record field")
    if not _REQUIRED_KEYS.issubset(data):
        for name in ("query", "response", "model"):
            if name not in data and not (name == "query" and data.get("messages") is not None):
                raise InvalidFieldError(name, None, "is required")
    get = data.get
    # given means meant: never silently replaced. A timestamp may also be a datetime,
    # as log() takes it (a mapping built in Python, not read from a file)
    record_id, timestamp = get("id"), get("timestamp")
    if record_id is not None and (not isinstance(record_id, str) or not record_id):
        raise InvalidFieldError("id", record_id, "must be a non-empty string, or left out")
    if (
        timestamp is not None
        and not isinstance(timestamp, datetime)
        and (not isinstance(timestamp, str) or not timestamp)
    ):
        raise InvalidFieldError(
            "timestamp", timestamp, "must be a non-empty string or a datetime, or left out"
        )
    context_hash = get("context_hash")
    if get("messages") is not None and (get("context") is not None or context_hash is not None):
        raise InvalidFieldError(
            "context", get("context", context_hash),
            "cannot be given with messages (the conversation is the context)",
        )  # fmt: skip
    if context_hash is None and get("context") is not None:
        context_hash = compute_context_hash(data["context"])
    assignment_hash = get("assignment_hash")
    if assignment_hash is None and get("assignment_key") is not None:
        assignment_hash = compute_assignment_hash(data["assignment_key"])
    response = data["response"]
    # an assistant message: given as the response, or beside its text (an exported record)
    message = response if isinstance(response, Mapping) else get("response_message")
    return UsageRecord(
        get("id") or "",
        get("timestamp") or "",
        get("query", ""),  # with messages, derived from them when left out (or None)
        "" if message is not None else response,
        data["model"],
        get("expert"),
        get("latency_ms", 0),
        get("token_count"),
        get("quality_score"),
        get("user_feedback"),
        get("feedback_text"),
        context_hash,
        get("dedupe_hash"),
        get("is_error", False),
        assignment_hash,
        None,  # conversation_hash: derived from the messages, never taken as given
        None,  # response_json: derived from the response message
        get("messages"),
        get("tools"),
        dict(message) if message is not None else None,
    )
