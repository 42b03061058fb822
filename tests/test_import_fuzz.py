"""Seeded fuzzing of `afs-continuous import`: mutated JSON Lines, each with its verdict.

Every case is a two-line file, a valid record then a mutated one. A mutation knows
whether the line it makes is a record the library must accept or refuse, and for a
refusal which field (or which kind of fault) the message must name. For each case: no
traceback, the exit code says which, a refusal names line 2 and the field and writes
nothing (not even line 1), an accepted line is stored as given.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from afs.continuous import UsageLogger
from afs.continuous.cli import EXIT_INVALID, EXIT_OK, main

SEED = 20261201
CASES = 1000

TEXT_FIELDS = ("query", "response", "model")
ODD_TEXT = [
    "héllo wörld", "日本語のテキスト", "emoji 🤖🚀", "مرحبا", "tab\tand\nnewline",
    "quote ' and \" and \\", "'; DROP TABLE usage; --", "Robert'); DELETE FROM usage;--",
    "${jndi:ldap://x}", "<script>alert(1)</script>", "%s%s%n", "\u200b zero width",
]  # fmt: skip
WRONG_TYPES: list[Any] = [7, 1.5, True, [], ["a"], {}, {"a": 1}]
BAD_NUMBERS: dict[str, list[Any]] = {
    "quality_score": [-0.01, 1.01, "0.5", True, [], 1e309, -1e309, "NaN"],
    "latency_ms": [-1, 86_400_001, "5", True, 1e309, []],  # None: not known, valid
    "token_count": [-1, 2**31, 1.5, "3", 1e20, True, 2**70],
    "user_feedback": [2, -2, 0.5, "1", True, 10**30],
}
BAD_TIMESTAMPS: list[Any] = [
    "", 0, 1700000000, "garbage", "2026-13-01T00:00:00Z", "3000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z", [], "2026-11-31", "yesterday",
]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """A mutated line and what must happen to it: ``field`` is the name (or the kind of
    fault) a refusal must mention; None means the line is a valid record."""

    name: str
    line: bytes
    field: str | None
    stored: dict[str, Any] | None = None


def _base(rng: random.Random, index: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "query": f"question {index} {rng.random():.6f}",
        "response": f"answer {rng.randint(0, 10**6)}",
        "model": rng.choice(["nayru-v1", "nayru-v2", "din"]),
    }
    optional = {
        "expert": rng.choice(["code", "math", None]),
        "latency_ms": round(rng.uniform(0, 5000), 2),
        "token_count": rng.choice([None, 0, rng.randint(1, 4000)]),
        "quality_score": rng.choice([None, 0.0, 1.0, round(rng.random(), 3)]),
        "user_feedback": rng.choice([None, -1, 0, 1]),
        "timestamp": f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:15:00Z",
        "is_error": rng.choice([True, False]),
    }
    for key, value in optional.items():
        if rng.random() < 0.6:
            record[key] = value
    return record


def _line(record: Any) -> bytes:
    return json.dumps(record).encode() + b"\n"


Mutation = Callable[[random.Random, dict[str, Any]], Case]


def _missing(rng: random.Random, r: dict[str, Any]) -> Case:
    field = rng.choice(TEXT_FIELDS)
    del r[field]
    return Case("missing", _line(r), field)


def _unknown_key(rng: random.Random, r: dict[str, Any]) -> Case:
    key = rng.choice(["qeury", "Model", "score", "metadata", "__proto__", "id ", ""])
    r[key] = rng.choice(["x", 1, None])
    return Case("unknown key", _line(r), repr(key) if key.strip() != key or not key else key)


def _wrong_type(rng: random.Random, r: dict[str, Any]) -> Case:
    field = rng.choice([*TEXT_FIELDS, "expert", "feedback_text"])
    r[field] = rng.choice(WRONG_TYPES)
    return Case("wrong type", _line(r), field)


def _blank_text(rng: random.Random, r: dict[str, Any]) -> Case:
    field = rng.choice(TEXT_FIELDS)
    r[field] = rng.choice(["", " ", "\n\t "])
    return Case("blank text", _line(r), field)


def _nul(rng: random.Random, r: dict[str, Any]) -> Case:
    field = rng.choice([*TEXT_FIELDS, "expert"])
    r[field] = "before\x00after"
    return Case("NUL", _line(r), field)


def _lone_surrogate(rng: random.Random, r: dict[str, Any]) -> Case:
    field = rng.choice(TEXT_FIELDS)
    r[field] = "half \ud800 a pair"
    return Case("lone surrogate", _line(r), field)


def _long_name(rng: random.Random, r: dict[str, Any]) -> Case:
    field = rng.choice(["model", "expert"])
    r[field] = "m" * rng.choice([257, 5000])
    return Case("long name", _line(r), field)


def _bad_number(rng: random.Random, r: dict[str, Any]) -> Case:
    field = rng.choice(sorted(BAD_NUMBERS))
    value = rng.choice(BAD_NUMBERS[field])
    r[field] = value
    line = _line(r)
    if value in ("NaN",) and rng.random() < 0.5:  # Python's json reads bare NaN
        line = line.replace(b'"NaN"', b"NaN")
    return Case("bad number", line, field)


def _bad_timestamp(rng: random.Random, r: dict[str, Any]) -> Case:
    r["timestamp"] = rng.choice(BAD_TIMESTAMPS)
    return Case("bad timestamp", _line(r), "timestamp")


def _bad_id(rng: random.Random, r: dict[str, Any]) -> Case:
    r["id"] = rng.choice(["", 0, 12, [], {}, False])
    return Case("bad id", _line(r), "id")


def _bad_flag(rng: random.Random, r: dict[str, Any]) -> Case:
    r["is_error"] = rng.choice(["yes", 1, 0, "true", []])
    return Case("bad is_error", _line(r), "is_error")


def _not_an_object(rng: random.Random, r: dict[str, Any]) -> Case:
    return Case("not an object", _line(rng.choice([[r], 1, "text", None, True])), "record")


def _truncated(rng: random.Random, r: dict[str, Any]) -> Case:
    text = json.dumps(r)
    return Case("truncated", text[: rng.randint(1, len(text) - 1)].encode() + b"\n", "JSON")


def _deep(rng: random.Random, r: dict[str, Any]) -> Case:
    depth = rng.choice([50, 5000, 100_000])
    r["query"] = "QQQ"
    line = _line(r).replace(b'"QQQ"', b"[" * depth + b"]" * depth)
    return Case("deep", line, "nested" if depth > 900 else "query")


def _bad_bytes(rng: random.Random, r: dict[str, Any]) -> Case:
    line = _line(r)
    cut = rng.randint(1, len(line) - 2)
    return Case("not UTF-8", line[:cut] + rng.choice([b"\xff", b"\xc3", b"\x80\x80"]) + line[cut:],
                "UTF-8")  # fmt: skip


def _odd_text(rng: random.Random, r: dict[str, Any]) -> Case:
    r[rng.choice(["query", "response"])] = rng.choice(ODD_TEXT) + f" {rng.random()}"
    return Case("odd text", _line(r), None, r)


def _edge_values(rng: random.Random, r: dict[str, Any]) -> Case:
    r.update(
        quality_score=rng.choice([0, 1, 0.0, 1.0, None]),
        latency_ms=rng.choice([0, 86_400_000, 0.001]),
        token_count=rng.choice([0, 2**31 - 1, None]),
        user_feedback=rng.choice([-1, 0, 1, None]),
        expert=rng.choice([None, "e" * 256]),
        timestamp=rng.choice(["2026-11-02T03:04:05+05:30", "2020-02-29T00:00:00Z"]),
    )
    return Case("edge values", _line(r), None, r)


def _supplied_id(rng: random.Random, r: dict[str, Any]) -> Case:
    r["id"] = f"given-{rng.getrandbits(64):x}"
    return Case("supplied id", _line(r), None, r)


REFUSING: list[Mutation] = [
    _missing, _unknown_key, _wrong_type, _blank_text, _nul, _lone_surrogate, _long_name,
    _bad_number, _bad_timestamp, _bad_id, _bad_flag, _not_an_object, _truncated, _deep,
    _bad_bytes,
]  # fmt: skip
ACCEPTING: list[Mutation] = [_odd_text, _edge_values, _supplied_id]


def _cases() -> list[Case]:
    rng = random.Random(SEED)
    mutations = REFUSING * 2 + ACCEPTING * 2  # about one case in six is a valid record
    return [rng.choice(mutations)(rng, _base(rng, i)) for i in range(CASES)]


def test_every_mutation_kind_is_exercised() -> None:
    names = {case.name for case in _cases()}
    assert len(names) == len(REFUSING) + len(ACCEPTING)
    assert sum(case.field is None for case in _cases()) > 100


def test_mutated_lines_are_refused_by_line_and_field_or_stored_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "fuzz.db"
    source = tmp_path / "case.jsonl"
    stored = 0
    failures: list[str] = []
    rng = random.Random(SEED + 1)
    for number, case in enumerate(_cases()):
        source.write_bytes(_line(_base(rng, -number)) + case.line)
        code = main(["import", str(source), "--db", str(db)])
        out, err = capsys.readouterr()
        what = f"case {number} ({case.name}): {case.line[:120]!r}"
        if case.field is None:
            if code != EXIT_OK:
                failures.append(f"{what} refused: {err.strip()}")
            stored += 2
            continue
        if code != EXIT_INVALID:
            failures.append(f"{what} exit {code}, expected a refusal")
        elif "line 2:" not in err or case.field not in err or "nothing imported" not in err:
            failures.append(f"{what} message does not name line 2 and {case.field}: {err!r}")
        if "Traceback" in out + err:
            failures.append(f"{what} printed a traceback")
    assert failures == []
    with UsageLogger(db_path=db) as logger:
        assert logger.get_statistics()["total"] == stored


def test_accepted_lines_are_stored_as_given(tmp_path: Path) -> None:
    db = tmp_path / "accepted.db"
    accepted = [case for case in _cases() if case.stored is not None][:60]
    source = tmp_path / "accepted.jsonl"
    source.write_bytes(b"".join(case.line for case in accepted))
    assert main(["import", str(source), "--db", str(db)]) == EXIT_OK
    with UsageLogger(db_path=db) as logger:
        records = list(logger.get_records(newest_first=False))
    by_query = {r.query: r for r in records}
    assert len(by_query) == len(accepted)
    for case in accepted:
        assert case.stored is not None
        record = by_query[case.stored["query"]]
        for key in ("response", "model", "expert", "token_count", "user_feedback", "id"):
            if key in case.stored and case.stored[key] is not None:
                assert getattr(record, key) == case.stored[key], key
