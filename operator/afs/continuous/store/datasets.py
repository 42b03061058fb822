"""Data sets and erasure, in SQL both dialects speak: the ``datasets`` table (one row per
export, its members as one blob, see :mod:`afs.continuous.privacy.membership`), and the
deletion of records with the conversation nodes only they used.

Each function takes an open connection inside the caller's transaction (``sqlite3`` or
``psycopg``: both have ``execute``) and the dialect's placeholder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from afs.continuous import conversations
from afs.continuous.privacy.membership import DatasetEntry

#: ids (or hashes) per statement: well under both drivers' parameter limits
CHUNK = 500

DATASET_COLUMNS = (
    "id, created_at, output, format, record_count, sha256, model_version, redaction, members"
)


def upsert_dataset(conn: Any, entry: DatasetEntry, *, mark: str) -> None:
    """Record an export; an export run again under the same id (a retried Job) replaces
    its record."""
    marks = ", ".join([mark] * 9)
    conn.execute(
        f"INSERT INTO datasets ({DATASET_COLUMNS}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE "
        "SET created_at = excluded.created_at, output = excluded.output, "
        "format = excluded.format, record_count = excluded.record_count, "
        "sha256 = excluded.sha256, model_version = excluded.model_version, "
        "redaction = excluded.redaction, members = excluded.members",
        (
            entry.dataset_id, entry.created_at, entry.output, entry.format_type,
            entry.record_count, entry.sha256, entry.model_version,
            None if entry.redaction is None else json.dumps(entry.redaction), entry.members,
        ),
    )  # fmt: skip


def label_dataset(conn: Any, dataset_id: str, model_version: str, *, mark: str) -> bool:
    cursor = conn.execute(
        f"UPDATE datasets SET model_version = {mark} WHERE id = {mark}", (model_version, dataset_id)
    )
    return bool(cursor.rowcount)


def dataset_from_row(row: Sequence[Any]) -> DatasetEntry:
    created = row[1]
    redaction = row[7]
    if isinstance(redaction, str):
        redaction = json.loads(redaction)
    return DatasetEntry(
        dataset_id=row[0],
        created_at=created if isinstance(created, str) else created.isoformat(),
        output=row[2],
        format_type=row[3],
        record_count=int(row[4]),
        sha256=row[5],
        model_version=row[6],
        redaction=redaction,
        members=bytes(row[8]),
    )


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _in(mark: str, count: int) -> str:
    return ", ".join([mark] * count)


def existing_ids(conn: Any, ids: Sequence[str], *, mark: str) -> list[str]:
    found: list[str] = []
    for chunk in _chunks(list(dict.fromkeys(ids))):
        rows = conn.execute(
            f"SELECT DISTINCT id FROM usage WHERE id IN ({_in(mark, len(chunk))})", tuple(chunk)
        )
        found.extend(row[0] for row in rows.fetchall())
    return sorted(found)


def read_corrections(
    conn: Any, ids: Sequence[str] | None, *, mark: str
) -> dict[str, dict[str, Any]]:
    """Corrections by record id (of ``ids``, or all)."""
    if ids is None:
        rows = conn.execute("SELECT record_id, correction_json FROM corrections").fetchall()
    else:
        rows = []
        for chunk in _chunks(list(dict.fromkeys(ids))):
            rows += conn.execute(
                "SELECT record_id, correction_json FROM corrections "
                f"WHERE record_id IN ({_in(mark, len(chunk))})",
                tuple(chunk),
            ).fetchall()
    return {record_id: json.loads(text) for record_id, text in rows}


def write_correction(
    conn: Any, record_id: str, correction_json: str, at: Any, *, mark: str
) -> None:
    """Keep the answer a record should have given (a later correction replaces it)."""
    conn.execute(
        "INSERT INTO corrections (record_id, correction_json, corrected_at) "
        f"VALUES ({mark}, {mark}, {mark}) ON CONFLICT (record_id) DO UPDATE SET "
        "correction_json = excluded.correction_json, corrected_at = excluded.corrected_at",
        (record_id, correction_json, at),
    )


def erase(conn: Any, ids: Sequence[str], *, mark: str) -> dict[str, int]:
    """Delete the records and every conversation node no remaining record needs.

    A node is needed while a record ends at it or a needed node extends it; the nodes
    on the erased records' chains are the only ones that can stop being needed, so only
    they are looked at (two scans: records ending at them, nodes extending them).
    """
    unique = list(dict.fromkeys(ids))
    ends: set[str] = set()
    removed = 0
    for chunk in _chunks(unique):
        marks = _in(mark, len(chunk))
        rows = conn.execute(
            f"SELECT DISTINCT conversation_hash FROM usage WHERE id IN ({marks}) "
            "AND conversation_hash IS NOT NULL",
            tuple(chunk),
        )
        ends.update(row[0] for row in rows.fetchall())
        removed += conn.execute(f"DELETE FROM usage WHERE id IN ({marks})", tuple(chunk)).rowcount
        conn.execute(f"DELETE FROM corrections WHERE record_id IN ({marks})", tuple(chunk))
    candidates = _chains(conn, ends, mark=mark)
    ordered = sorted(candidates)
    referenced: set[str] = set()
    children: dict[str, set[str]] = {}
    for chunk in _chunks(ordered):
        marks = _in(mark, len(chunk))
        rows = conn.execute(
            f"SELECT DISTINCT conversation_hash FROM usage WHERE conversation_hash IN ({marks})",
            tuple(chunk),
        )
        referenced.update(row[0] for row in rows.fetchall())
        rows = conn.execute(
            f"SELECT hash, parent FROM conversation_nodes WHERE parent IN ({marks})", tuple(chunk)
        )
        for child, parent in rows.fetchall():
            children.setdefault(parent, set()).add(child)
    orphans = conversations.orphaned_nodes(candidates, referenced, children)
    for chunk in _chunks(sorted(orphans)):
        conn.execute(
            f"DELETE FROM conversation_nodes WHERE hash IN ({_in(mark, len(chunk))})", tuple(chunk)
        )
    return {"records": removed, "conversation_nodes": len(orphans)}


def _chains(conn: Any, ends: Iterable[str], *, mark: str) -> set[str]:
    """Every node on the chains from ``ends`` to their roots."""
    seen: set[str] = set()
    for end in ends:
        current: str | None = end
        while current is not None and current not in seen:
            rows = conn.execute(conversations.CHAIN_SQL.format(mark=mark), (current,)).fetchall()
            if not rows:
                break
            for node, _, _ in rows:
                seen.add(node)
            current = rows[-1][1]
    return seen
