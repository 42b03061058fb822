"""Privacy requests: ``forget`` (erasure) and ``lineage`` (which data sets and model
versions a record went into)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from afs.continuous.cli.common import emit
from afs.continuous.logger import UsageLogger
from afs.continuous.privacy.erasure import LABEL_ERASED, datasets_with, mark_model_versions
from afs.continuous.privacy.membership import DatasetEntry
from afs.continuous.records import (
    MAX_ASSIGNMENT_KEY_CHARS,
    check_record_id,
    compute_assignment_hash,
)

#: the most ids an --ids file may list
MAX_IDS = 1_000_000


def add_privacy_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "forget", parents=[common],
        help="erase a user's records; name the data sets and versions trained on them",
        description="Deletes the records of one assignment key (a user, a session) or of the "
        "ids in a file, with the conversation messages no other record uses, in one "
        "transaction; prints the data sets that included any of them and what trained on "
        "those. ModelVersions in a cluster (namespace/name) are labelled "
        f"{LABEL_ERASED}=true, so a policy can retire them. Weights already trained and "
        "copies kept elsewhere (exported files, archives) are not touched: see "
        "docs/privacy.md.",
    )  # fmt: skip
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--assignment-key", metavar="KEY", help="the user's (session's) key")
    which.add_argument("--ids", metavar="FILE", help="record ids, one per line (- for stdin)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be erased")
    p.add_argument(
        "--no-mark", action="store_true",
        help="do not label the affected ModelVersions in the cluster",
    )  # fmt: skip
    p.set_defaults(handler=cmd_forget)

    p = sub.add_parser(
        "lineage", parents=[common], help="the data sets and versions a record went into",
        description="Lists each recorded export that took the record, and the model version "
        "trained on it (also after the record was erased).",
    )  # fmt: skip
    p.add_argument("record_id", help="the record's id")
    p.set_defaults(handler=cmd_lineage)


def read_ids(path: str) -> list[str]:
    """Record ids from a file, one per line; blank lines and ``#`` comments skipped."""
    handle = sys.stdin if path == "-" else Path(path).open(encoding="utf-8")  # noqa: SIM115
    ids: list[str] = []
    with handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if len(ids) >= MAX_IDS:
                raise ValueError(f"--ids {path}: more than {MAX_IDS} ids; split the request")
            try:
                ids.append(check_record_id(text))
            except ValueError as exc:
                raise ValueError(f"--ids {path} line {number}: {exc}") from None
    return ids


def cmd_forget(args: argparse.Namespace, logger: UsageLogger) -> int:
    store = logger.store
    if args.assignment_key is not None:
        key = args.assignment_key
        if not key or len(key) > MAX_ASSIGNMENT_KEY_CHARS:
            raise ValueError(f"--assignment-key must be 1 to {MAX_ASSIGNMENT_KEY_CHARS} characters")
        assignment_hash = compute_assignment_hash(key)
        assert assignment_hash is not None
        requested = store.ids_for_assignment(assignment_hash)
        subject = "that assignment key"
    else:
        requested = read_ids(args.ids)
        subject = f"the {len(requested)} ids listed"
    present = store.existing_ids(requested) if args.ids is not None else requested
    affected = datasets_with(store, requested)
    counts = {"records": len(present), "conversation_nodes": 0}
    if not args.dry_run and present:
        counts = store.erase_records(present)
    versions = [e.model_version for e in affected if e.model_version]
    marked: list[str] = []
    unmarked: list[str] = []
    cluster = sorted({v for v in versions if "/" in v})
    if cluster and not args.dry_run and not args.no_mark:
        marked, unmarked = mark_model_versions(cluster, erased=len(present))
    data = {
        "dry_run": args.dry_run,
        "records": counts["records"],
        "conversation_nodes": counts["conversation_nodes"],
        "datasets": [entry.to_dict() for entry in affected],
        "model_versions": sorted(set(versions)),
        "marked": marked,
        "not_marked": unmarked,
    }
    verb = "would erase" if args.dry_run else "erased"
    nodes = counts["conversation_nodes"]
    lines = [f"{verb} {counts['records']} records of {subject}"]
    if nodes:
        lines[0] += f" ({nodes} conversation nodes no other record used)"
    lines += _dataset_lines(affected, "they were in")
    lines += [f"labelled ModelVersion {name} {LABEL_ERASED}=true" for name in marked]
    lines += [f"could not label ModelVersion {item}" for item in unmarked]
    emit(args, data, "\n".join(lines))
    return 2 if unmarked else 0


def cmd_lineage(args: argparse.Namespace, logger: UsageLogger) -> int:
    record_id = check_record_id(args.record_id)
    affected = datasets_with(logger.store, [record_id])
    exists = logger.store.get(record_id) is not None
    data = {
        "record_id": record_id,
        "exists": exists,
        "datasets": [entry.to_dict() for entry in affected],
        "model_versions": sorted({e.model_version for e in affected if e.model_version}),
    }
    if not affected:
        state = "is in no recorded data set" if exists else "is not here and in no data set"
        emit(args, data, f"record {record_id} {state}")
        return 0 if exists else 1
    state = "" if exists else " (erased since)"
    emit(args, data, "\n".join(_dataset_lines(affected, f"record {record_id}{state} went into")))
    return 0


def _dataset_lines(entries: list[DatasetEntry], lead: str) -> list[str]:
    if not entries:
        return ["no recorded data set included them"] if lead == "they were in" else []
    lines = [f"{lead} {len(entries)} data sets:"]
    for entry in entries:
        trained = entry.model_version or "no version recorded"
        lines.append(
            f"  {entry.dataset_id}  {entry.created_at}  {entry.record_count} records  "
            f"trained: {trained}  {entry.output}"
        )
    return lines
