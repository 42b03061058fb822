"""Record validation rules, ids and hashes."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from afs.continuous import InvalidFieldError, UsageRecord
from afs.continuous.errors import InvalidBatchError
from afs.continuous.records import (
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    RECORD_FIELDS,
    _plain_row,
    compute_dedupe_hash,
    new_record_id,
    new_record_ids,
    normalize_record,
    normalized_batch,
    normalized_rows,
    record_from_mapping,
    records_from_rows,
)
from afs.continuous.timeutil import format_timestamp

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _record(**overrides: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "id": "",
        "timestamp": "",
        "query": "What is 65816 assembly?",
        "response": "The SNES CPU's instruction set.",
        "model": "nayru-v1",
    }
    values.update(overrides)
    return UsageRecord(**values)


def test_fields_are_in_the_original_order_with_its_defaults() -> None:
    record = UsageRecord("id1", "2026-01-01T00:00:00Z", "q", "r", "m")
    assert list(record.to_dict()) == [
        "id",
        "timestamp",
        "query",
        "response",
        "model",
        "expert",
        "latency_ms",
        "token_count",
        "quality_score",
        "user_feedback",
        "feedback_text",
        "context_hash",
        "dedupe_hash",
        "is_error",  # added after the original thirteen
        "assignment_hash",
        "conversation_hash",
        "response_json",
        "messages",  # not columns: the conversation, stored once per distinct prefix
        "tools",
        "response_message",  # read from response_json
    ]
    assert (record.expert, record.latency_ms, record.token_count, record.quality_score) == (
        None,
        0,
        0,
        0.0,
    )


def test_from_dict_ignores_stored_extra_columns() -> None:
    data = _record(id="abc").to_dict() | {"created_at": "2026-01-01 00:00:00", "feedback_at": None}
    assert UsageRecord.from_dict(data) == _record(id="abc")


def test_dedupe_hash_ignores_case_and_whitespace_runs() -> None:
    assert compute_dedupe_hash("What  is\nit?", "An answer") == compute_dedupe_hash(
        "what is it?", "AN   answer"
    )
    assert compute_dedupe_hash("a", "b c") != compute_dedupe_hash("a b", "c")
    assert _record().compute_dedupe_hash() == compute_dedupe_hash(
        "What is 65816 assembly?", "The SNES CPU's instruction set."
    )


def _hash_by_the_rule(query: str, response: str) -> str:
    """The dedupe hash as defined: whitespace runs as one space, ends stripped, folded."""

    def fold(text: str) -> str:
        return " ".join(text.split()).casefold()

    payload = f"{fold(query)}\x1f{fold(response)}".encode()
    return hashlib.sha256(payload).hexdigest()[:32]


@pytest.mark.parametrize(
    "text",
    [
        "Plain text", "UPPER and lower", "two  spaces", " leading", "trailing ", "",
        "tab\there", "line\nbreak", "cr\rlf\n", "vt\x0bff\x0c", "unit\x1fsep\x1cx\x1dy\x1ez",
        "nbsp\u00a0here", "line\u2028sep", "Straße", "ǅ title", "İstanbul", "ﬁ ligature",
        "punctuation!?;:'\"", "\x7f delete", "digits 0123",
    ],
)  # fmt: skip
def test_dedupe_hash_follows_the_rule_for_every_kind_of_text(text: str) -> None:
    assert compute_dedupe_hash(text, "x") == _hash_by_the_rule(text, "x")
    assert compute_dedupe_hash("x", text) == _hash_by_the_rule("x", text)


@settings(derandomize=True, max_examples=300)
@given(st.text(st.characters(codec="utf-8")), st.text(alphabet=" \t\nAbZz\x1f\u00a0"))
def test_dedupe_hash_follows_the_rule_for_any_text(query: str, response: str) -> None:
    assert compute_dedupe_hash(query, response) == _hash_by_the_rule(query, response)


def test_ids_are_12_characters_and_unique() -> None:
    ids = [new_record_id() for _ in range(2000)] + new_record_ids(2000)
    assert all(len(i) == 12 for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_single_id_has_the_seconds_prefix_and_60_random_bits() -> None:
    ids = [new_record_id(now=1000.0) for _ in range(200)]
    assert len({i[:2] for i in ids}) == 1
    assert len({i[2] for i in ids}) > 32


def test_a_draw_of_ids_is_sorted_in_one_lane() -> None:
    """Handed out in order, a draw's ids sit side by side in the primary-key index."""
    draw = new_record_ids(500, now=1000.0)
    assert draw == sorted(draw)
    assert len({i[:4] for i in draw}) == 1  # the second's 2 characters and the lane's 2
    assert len({i[4] for i in draw}) > 32


def test_draws_take_different_lanes() -> None:
    lanes = {new_record_ids(3, now=1000.0)[0][:4] for _ in range(50)}
    assert len(lanes) > 40  # 4,096 lanes: 50 draws rarely share one


def test_rows_become_the_records_a_batch_would_have_with_deferred_hashes_made() -> None:
    items = [
        {"query": "Hello  World", "response": "r", "model": "m"},  # the one-pass path
        {"query": "q", "response": "r", "model": "m", "context": "c"},  # the general path
    ]
    rows = normalized_rows(items, now=NOW)
    assert rows[0][RECORD_FIELDS.index("dedupe_hash")] is None
    assert rows[1][RECORD_FIELDS.index("dedupe_hash")] is not None  # hashed as it is checked
    assert records_from_rows(rows) == normalized_batch(items, now=NOW)


def test_normalize_fills_timestamp_and_hash_in_utc() -> None:
    record = normalize_record(_record(), now=NOW)
    assert record.timestamp == "2026-11-20T12:00:00.000000Z"
    assert record.dedupe_hash == compute_dedupe_hash(record.query, record.response)


def test_normalize_converts_offsets_to_utc() -> None:
    later = NOW + timedelta(hours=1)
    record = normalize_record(_record(timestamp="2026-11-20T14:30:00+02:00"), now=later)
    assert record.timestamp == "2026-11-20T12:30:00.000000Z"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("query", ""),
        ("query", "   \n"),
        ("query", None),
        ("query", 42),
        ("query", "x" * (MAX_TEXT_CHARS + 1)),
        ("query", "bad surrogate \ud800"),
        ("response", ""),
        ("response", b"bytes"),
        ("model", ""),
        ("model", "m" * (MAX_NAME_CHARS + 1)),
        ("expert", 3),
        ("latency_ms", -1),
        ("latency_ms", math.nan),
        ("latency_ms", math.inf),
        ("latency_ms", 1e308),  # two of them summed are inf: stats --json printed Infinity
        ("latency_ms", 86_400_001),
        ("latency_ms", "150"),
        ("latency_ms", True),
        ("quality_score", 1.5),
        ("quality_score", -0.1),
        ("quality_score", math.nan),
        ("quality_score", "0.9"),
        ("quality_score", True),
        ("token_count", -3),
        ("token_count", 2.5),
        ("token_count", 2**31),
        ("token_count", 2**63),
        ("query", "nul \x00 inside"),
        ("response", "\x00"),
        ("model", "m\x00"),
        ("expert", "e\x00"),
        ("feedback_text", "f\x00"),
        ("user_feedback", 2),
        ("user_feedback", True),
        ("user_feedback", "1"),
        ("timestamp", "yesterday"),
        ("timestamp", "3000-01-01T00:00:00Z"),  # would count as new after every retrain
        ("timestamp", "2026-11-20T12:05:01Z"),  # just past the 5 minutes of skew allowed
        ("timestamp", 12345),
        ("feedback_text", 7),
    ],
)
def test_invalid_values_raise_an_error_naming_field_and_value(field: str, value: Any) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        normalize_record(_record(**{field: value}), now=NOW)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert field in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {
            "query": "Qu'est-ce que l'assembleur 65816 ?",
            "response": "Le jeu d'instructions du CPU.",
        },
        {"quality_score": 0, "latency_ms": 0},
        {"quality_score": 1, "latency_ms": 12, "token_count": 0},
        {"user_feedback": -1, "feedback_text": "wrong bank"},
        {"expert": "asm", "context_hash": "abc"},
    ],
)
def test_valid_values_pass(overrides: dict[str, Any]) -> None:
    record = normalize_record(_record(**overrides), now=NOW)
    assert isinstance(record.latency_ms, float)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"query": "q", "response": "r"}, "model"),
        ({"query": "q", "response": "r", "model": "m", "qualty_score": 0.5}, "qualty_score"),
        (["not", "a", "mapping"], "record"),
    ],
)
def test_record_from_mapping_rejects_missing_and_unknown_keys(data: Any, field: str) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        record_from_mapping(data)
    assert caught.value.field == field


def test_record_from_mapping_hashes_context() -> None:
    one = record_from_mapping({"query": "q", "response": "r", "model": "m", "context": {"a": 1}})
    two = record_from_mapping({"query": "q", "response": "r", "model": "m", "context": {"a": 1}})
    assert one.context_hash is not None and one.context_hash == two.context_hash


def test_the_clock_skew_allowed_is_five_minutes_unless_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at_the_limit = normalize_record(_record(timestamp="2026-11-20T12:05:00Z"), now=NOW)
    assert at_the_limit.timestamp == "2026-11-20T12:05:00.000000Z"
    monkeypatch.setenv("AFS_MAX_CLOCK_SKEW_SECONDS", "3600")
    ahead = normalize_record(_record(timestamp="2026-11-20T12:59:00Z"), now=NOW)
    assert ahead.timestamp == "2026-11-20T12:59:00.000000Z"


@pytest.mark.parametrize(
    ("field", "value"), [("id", ""), ("id", 0), ("id", 12), ("timestamp", ""), ("timestamp", 0)]
)
def test_a_given_id_or_timestamp_that_is_empty_or_not_text_is_refused(
    field: str, value: Any
) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        record_from_mapping({"query": "q", "response": "r", "model": "m", field: value})
    assert caught.value.field == field


def test_a_missing_or_null_id_and_timestamp_are_filled_in() -> None:
    for data in ({}, {"id": None, "timestamp": None}):
        record = record_from_mapping({"query": "q", "response": "r", "model": "m", **data})
        assert (record.id, record.timestamp) == ("", "")


def test_no_id_starts_like_a_command_line_option() -> None:
    """The clock prefix went through '-' for a minute in every 68: ``feedback ID 1`` then
    read the id as an option."""
    starts = {new_record_id(now=float(second))[0] for second in range(0, 5000, 7)}
    starts |= {i[0] for second in range(0, 5000, 64) for i in new_record_ids(3, now=second)}
    assert "-" not in starts and len(starts) > 50


_ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(2**31 - 2, 2**31 + 1),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 0.5, 86_400_000.0]),
    st.text(max_size=4), st.sampled_from(["ok", " ", "", "a\x00b", "é", "m" * 257]),
    st.lists(st.integers(), max_size=1),
)  # fmt: skip
_PLAIN_FIELDS = ["query", "response", "model", "expert", "latency_ms", "token_count",
                 "quality_score", "user_feedback", "is_error"]  # fmt: skip


@settings(max_examples=600, derandomize=True, deadline=None)
@given(
    st.dictionaries(st.sampled_from(_PLAIN_FIELDS), _ANY_VALUE, max_size=9).map(
        lambda d: {"query": "q", "response": "r", "model": "m"} | d
    )
)
def test_the_one_pass_path_accepts_exactly_what_the_checks_accept(item: dict[str, Any]) -> None:
    """The fast path for typical mappings must never accept what the detailed checks
    refuse, and must build the same record when it accepts."""
    now = datetime(2026, 11, 20, tzinfo=UTC)
    fast = _plain_row(item, format_timestamp(now), hashed=True)
    try:
        slow = normalize_record(record_from_mapping(item), now=now)
    except InvalidFieldError:
        assert fast is None
        return
    if fast is not None:
        assert UsageRecord(*fast) == slow


def test_an_assignment_key_is_stored_hashed() -> None:
    record = record_from_mapping(
        {"query": "q", "response": "r", "model": "m", "assignment_key": "user-42"}
    )
    normalized = normalize_record(record, now=NOW)
    assert normalized.assignment_hash == hashlib.sha256(b"user-42").hexdigest()[:32]
    assert "user-42" not in json.dumps(normalized.to_dict())


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"assignment_key": ""}, "assignment_key"),
        ({"assignment_key": 42}, "assignment_key"),
        ({"assignment_key": "k" * 1025}, "assignment_key"),
        ({"assignment_hash": "not-a-hash"}, "assignment_hash"),
        ({"assignment_hash": "AB" * 16}, "assignment_hash"),
    ],
    ids=["empty", "number", "too-long", "not-hex", "upper-case"],
)
def test_a_bad_assignment_key_is_refused_by_name(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        normalize_record(
            record_from_mapping({"query": "q", "response": "r", "model": "m", **data}), now=NOW
        )
    assert caught.value.field == field


def test_rows_name_the_index_of_the_item_that_fails_in_the_whole_batch() -> None:
    items = [{"query": "q", "response": "r", "model": "m"}] * 2 + [
        {"query": "q", "response": "r", "model": "m", "latency_ms": "fast"}
    ]
    with pytest.raises(InvalidBatchError) as caught:
        normalized_rows(items, now=NOW)
    assert caught.value.index == 2 and caught.value.cause.field == "latency_ms"
