"""Commands on records: ``log``, ``feedback``, ``import``, ``stats``, ``records``."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from tqdm import tqdm

from afs.continuous.argtypes import count, whole_number
from afs.continuous.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    CommandError,
    emit,
    feedback_value,
    since_arg,
)
from afs.continuous.errors import InvalidBatchError, InvalidFieldError
from afs.continuous.logger import UsageLogger
from afs.continuous.records import MAX_TOKEN_COUNT, ImportedIds, record_from_mapping


def cmd_log(args: argparse.Namespace, logger: UsageLogger) -> int:
    record_id = logger.log(
        args.query,
        args.response,
        args.model,
        expert=args.expert,
        latency_ms=args.latency_ms,
        quality_score=args.quality,
        token_count=args.tokens,
        user_feedback=args.feedback,
        is_error=args.error,
    )
    emit(args, {"id": record_id}, record_id)
    return EXIT_OK


def cmd_feedback(args: argparse.Namespace, logger: UsageLogger) -> int:
    if not logger.record_feedback(args.record_id, args.value, args.text, args.correction):
        raise CommandError(f"no record with id {args.record_id!r}", EXIT_NOT_FOUND)
    emit(args, {"id": args.record_id, "feedback": args.value}, "ok")
    return EXIT_OK


class ImportLines:
    """The JSON objects of an import file, with the number of the line last read, so a
    record refused later (by the logger's checks, as the store consumes the stream) is
    reported by its line; blank lines make that differ from its index. Lines are decoded
    one by one, so bytes that are not UTF-8 are reported by their line too."""

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.handle, self.name, self.line = handle, name, 0
        self.read = 0
        #: ids for lines that carry none, so a second import of the file is recognised
        self.derived = ImportedIds()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for number, raw in enumerate(self.handle, start=1):
            self.line = number
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise self.refused(f"not UTF-8 text (byte {exc.start + 1})") from None
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise self.refused(f"not valid JSON ({exc.msg})") from exc
            except ValueError as exc:  # a number of thousands of digits
                raise self.refused(f"not a readable record ({str(exc).split(':')[0]})") from exc
            except RecursionError:
                raise self.refused("nested too deeply to be a record") from None
            try:
                record_from_mapping(data)  # shape check with the line number at hand
            except InvalidFieldError as exc:
                raise self.refused(str(exc)) from exc
            if data.get("id") is None:
                data["id"] = self.derived.for_line(data)
            self.read += 1
            yield data

    def refused(self, reason: str) -> CommandError:
        return CommandError(f"{self.name} line {self.line}: {reason}; nothing imported")


def open_import(path: str) -> BinaryIO:
    """The file's bytes; gzipped (a retention archive) or not, whatever its name."""
    if path == "-":
        return sys.stdin.buffer
    try:
        handle = open(path, "rb")  # noqa: SIM115
        if handle.peek(2)[:2] == b"\x1f\x8b":
            return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]  # closes it
        return handle
    except OSError as exc:
        raise CommandError(f"{path}: cannot read ({exc.strerror})") from exc


def cmd_import(args: argparse.Namespace, logger: UsageLogger) -> int:
    name = "<stdin>" if args.file == "-" else args.file
    # streamed into the store's one transaction (not read into a list first: that took
    # ~5x the file's size in memory); a bad line aborts it, and nothing is imported
    with open_import(args.file) as handle:
        lines = ImportLines(handle, name)
        rows = tqdm(lines, desc="import", unit="rec", delay=1.0, disable=None)
        try:
            ids = logger.log_many(rows, skip_existing=lines.derived.given)
        except InvalidBatchError as exc:
            raise lines.refused(str(exc.cause)) from exc
        except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
            raise lines.refused(f"cannot read the file ({exc})") from exc
    skipped = lines.read - len(ids)
    message = f"imported {len(ids)} records into {logger.db_path}"
    if skipped:
        message += f"; skipped {skipped} stored already (imported before)"
    emit(args, {"imported": len(ids), "skipped": skipped}, message)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, logger: UsageLogger) -> int:
    stats = logger.get_statistics(
        since_arg(args.since), until=since_arg(args.until, field="until"), model=args.model,
        expert=args.expert,
    )  # fmt: skip
    lines = [
        f"records          {stats['total']}",
        f"scored           {stats['scored']}",
        f"with feedback    {stats['with_feedback']} ({stats['feedback_rate'] * 100:.1f}%)",
        f"  positive       {stats['positive_feedback']}",
        f"  negative       {stats['negative_feedback']}",
        f"  neutral        {stats['neutral_feedback']}",
        "avg quality      "
        + (f"{stats['avg_quality_score']:.3f}" if stats["scored"] else "- (none scored)"),
        "avg latency ms   "
        + (f"{stats['avg_latency_ms']:.1f}" if stats["latency_measured"] else "- (none measured)"),
        f"total tokens     {stats['total_tokens']}",
    ]
    emit(args, stats, "\n".join(lines))
    return EXIT_OK


def cmd_records(args: argparse.Namespace, logger: UsageLogger) -> int:
    records = logger.get_records(
        since_arg(args.since), model=args.model, min_quality=args.min_quality,
        with_feedback_only=args.with_feedback, limit=args.limit,
    )  # fmt: skip
    for record in records:
        if args.json:
            print(json.dumps(record.to_dict(), ensure_ascii=False))
        else:
            quality = "-" if record.quality_score is None else f"{record.quality_score:.2f}"
            feedback = "-" if record.user_feedback is None else f"{record.user_feedback:+d}"
            query = " ".join(record.query.split())
            print(f"{record.id}  {record.timestamp}  {record.model:<16} q={quality:<4} "
                  f"fb={feedback:<2} {query[:60]}")  # fmt: skip
    return EXIT_OK


def add_record_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "log", parents=[common], help="log one query/response",
        description="Log one query and its response; prints the new record's id (for "
        "`feedback`). Creates the database if it is not there.",
    )  # fmt: skip
    p.add_argument("--query", required=True, help="what the user asked")
    p.add_argument("--response", required=True, help="what the model answered")
    p.add_argument("--model", required=True, help="the model (version) that answered")
    p.add_argument("--expert", help="the expert or adapter that answered, if any")
    p.add_argument(
        "--latency-ms", type=float, default=0.0,
        help="response time in ms (omit: not measured, left out of averages)",
    )  # fmt: skip
    p.add_argument("--quality", type=float, help="quality score in [0, 1] (omit: unscored)")
    p.add_argument("--tokens", type=whole_number(0, MAX_TOKEN_COUNT), help="tokens generated")
    p.add_argument("--feedback", type=feedback_value, help="-1, 0 or 1")
    p.add_argument("--error", action="store_true", help="the request failed")
    p.set_defaults(handler=cmd_log, creates_db=True)

    p = sub.add_parser(
        "feedback", parents=[common], help="record feedback on a logged record",
        description="Thumbs up (1), neutral (0) or down (-1) on a record, by the id `log` "
        "printed; exit 1 if no record has that id.",
    )  # fmt: skip
    p.add_argument("record_id", help="the record's id")
    p.add_argument("value", type=feedback_value, help="1 good, 0 neutral, -1 bad")
    p.add_argument("--text", help="free-text feedback")
    p.add_argument(
        "--correction", metavar="ANSWER",
        help="the answer the model should have given (preference exports learn from it)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_feedback)

    p = sub.add_parser(
        "import", parents=[common],
        help="import usage records from JSON Lines (all or nothing)",
        description="Each line is a JSON object with query, response, model and optionally "
        "expert, latency_ms, token_count, quality_score, user_feedback, feedback_text, "
        "timestamp, id, context. Any invalid line aborts the import; nothing is written. "
        "A line without an id gets one derived from its content and timestamp, so "
        "importing the same file again skips what it stored the first time (and says "
        "how many); a line whose own id is stored already is an error.",
    )  # fmt: skip
    p.add_argument("file", help="a .jsonl file, or - for standard input")
    p.set_defaults(handler=cmd_import, creates_db=True)

    p = sub.add_parser(
        "stats", parents=[common], help="usage statistics",
        description="Counts, feedback and averages over a window (default: everything).",
    )  # fmt: skip
    p.add_argument("--since", help="ISO-8601 time or look-back such as 24h, 7d")
    p.add_argument("--until", help="ISO-8601 time or look-back (exclusive end)")
    p.add_argument("--model", help="only this model's records")
    p.add_argument("--expert", help="only this expert's records")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser(
        "records", parents=[common], help="list records, newest first",
        description="One line per record: id, time, model, quality, feedback, query.",
    )  # fmt: skip
    p.add_argument("--since", help="ISO-8601 time or look-back such as 24h, 7d")
    p.add_argument("--model", help="only this model's records")
    p.add_argument("--min-quality", type=float, help="only records scored at least this")
    p.add_argument("--with-feedback", action="store_true", help="only records with feedback")
    p.add_argument("--limit", type=count, default=20, help="at most this many (default 20)")
    p.set_defaults(handler=cmd_records)
