"""The ``afs-continuous`` command: log, import, inspect and export usage data.

Exit status: 0 on success, 1 when the thing asked for does not exist (an unknown record
id), 2 on invalid input or configuration (with a message naming what is wrong).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm

from afs.continuous import __version__
from afs.continuous.config import ConfigError, DataGeneratorConfig, build_config, load_config_file
from afs.continuous.errors import (
    ContinuousError,
    InvalidBatchError,
    InvalidFieldError,
    strip_credentials,
)
from afs.continuous.generator import TrainingDataGenerator
from afs.continuous.logger import UsageLogger
from afs.continuous.loop_cli import add_loop_options, require_database, run_loop_command
from afs.continuous.privacy.cli import add_privacy_commands
from afs.continuous.privacy.settings import DEFAULT_ENTITIES, parse_entities
from afs.continuous.records import record_from_mapping
from afs.continuous.scoring import HeuristicScorer
from afs.continuous.storage import check_upload_url, upload
from afs.continuous.store import DEFAULT_DB_PATH, is_postgres_url, open_store, resolve_target
from afs.continuous.timeutil import format_timestamp, parse_since, utc_now

EXIT_OK, EXIT_NOT_FOUND, EXIT_INVALID = 0, 1, 2


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_INVALID) -> None:
        super().__init__(message)
        self.code = code


def _since(value: str | None, *, field: str = "since") -> datetime | None:
    return None if value is None else parse_since(value, now=utc_now(), field=field)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(_finite(data), indent=2, default=str, allow_nan=False) if args.json else text)


def _finite(data: Any) -> Any:
    """JSON has no Infinity or NaN (a sum of huge latencies overflows to inf): null."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


# --- commands ------------------------------------------------------------------------


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
    _emit(args, {"id": record_id}, record_id)
    return EXIT_OK


def cmd_feedback(args: argparse.Namespace, logger: UsageLogger) -> int:
    if not logger.record_feedback(args.record_id, args.value, args.text):
        raise CommandError(f"no record with id {args.record_id!r}", EXIT_NOT_FOUND)
    _emit(args, {"id": args.record_id, "feedback": args.value}, "ok")
    return EXIT_OK


class _ImportLines:
    """The JSON objects of an import file, with the number of the line last read, so a
    record refused later (by the logger's checks, as the store consumes the stream) is
    reported by its line; blank lines make that differ from its index. Lines are decoded
    one by one, so bytes that are not UTF-8 are reported by their line too."""

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.handle, self.name, self.line = handle, name, 0

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
            except RecursionError:
                raise self.refused("nested too deeply to be a record") from None
            try:
                record_from_mapping(data)  # shape check with the line number at hand
            except InvalidFieldError as exc:
                raise self.refused(str(exc)) from exc
            yield data

    def refused(self, reason: str) -> CommandError:
        return CommandError(f"{self.name} line {self.line}: {reason}; nothing imported")


def _open_import(path: str) -> BinaryIO:
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
    with _open_import(args.file) as handle:
        lines = _ImportLines(handle, name)
        rows = tqdm(lines, desc="import", unit="rec", delay=1.0, disable=None)
        try:
            ids = logger.log_many(rows)
        except InvalidBatchError as exc:
            raise lines.refused(str(exc.cause)) from exc
        except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
            raise lines.refused(f"cannot read the file ({exc})") from exc
    _emit(args, {"imported": len(ids)}, f"imported {len(ids)} records into {logger.db_path}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, logger: UsageLogger) -> int:
    stats = logger.get_statistics(
        _since(args.since), until=_since(args.until, field="until"), model=args.model,
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
    _emit(args, stats, "\n".join(lines))
    return EXIT_OK


def cmd_records(args: argparse.Namespace, logger: UsageLogger) -> int:
    records = logger.get_records(
        _since(args.since), model=args.model, min_quality=args.min_quality,
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


def _generator_config(args: argparse.Namespace) -> DataGeneratorConfig:
    values: dict[str, Any] = {}
    if args.config:
        data = load_config_file(args.config)
        values.update(data.get("generator_config", data) if "generator_config" in data else data)
    overrides = {
        "min_quality_score": args.min_quality,
        "format_type": args.format,
        "max_samples": args.max_samples,
        "existing_data_path": args.existing,
        "model": args.model,
        "expert": args.expert,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if args.min_feedback is not None:
        values["min_user_feedback"] = (
            None if args.min_feedback == "none" else int(args.min_feedback)
        )
    if args.no_dedupe:
        values["deduplicate"] = False
    if args.no_existing:
        values["include_existing_data"] = False
    if args.no_membership:
        values["record_membership"] = False
    if args.redact or args.redact_entities or args.redact_operator:
        redaction = dict(values.get("redaction") or {})
        if args.redact_entities:
            redaction["entities"] = parse_entities(args.redact_entities)
        if args.redact_operator:
            redaction["operator"] = args.redact_operator
        values["redaction"] = redaction
    return build_config(DataGeneratorConfig, values, source=args.config or "export options")


def cmd_export(args: argparse.Namespace, logger: UsageLogger) -> int:
    config: DataGeneratorConfig = args.generator_config
    result = TrainingDataGenerator(logger, config).generate(
        args.output, since=_since(args.since), progress=True,
        dataset_id=args.dataset_id, model_version=args.model_version,
    )  # fmt: skip
    text = (
        f"wrote {result.final_count} samples ({config.format_type}) to {result.output_path}\n"
        f"  candidates {result.total_candidates}, below quality {result.filtered_by_quality}, "
        f"without required feedback {result.filtered_by_feedback}, "
        f"duplicates {result.duplicates_removed}, rehearsal {result.existing_samples}"
    )
    if result.redaction is not None:
        found = result.redaction["entities"]
        text += (
            f"\n  redacted {sum(found.values())} values in {result.redaction['records_redacted']} "
            f"samples ({', '.join(f'{k} {v}' for k, v in found.items()) or 'none found'})"
            f", dropped {result.redaction['records_dropped']}"
        )
    if result.dataset_id is not None:
        text += f"\n  membership recorded as data set {result.dataset_id}"
    data = result.to_dict()
    if args.upload:
        upload(result.output_path, args.upload)
        data["uri"] = strip_credentials(args.upload)
        text += f"\n  uploaded to {data['uri']}"
    if args.report:
        Path(args.report).write_text(json.dumps(data), encoding="utf-8")
    _emit(args, data, text)
    return EXIT_OK


def _prepare_export(args: argparse.Namespace) -> None:
    """Check the export settings before the database is opened or any file touched."""
    args.generator_config = _generator_config(args)
    if args.upload:
        try:
            check_upload_url(args.upload)
        except ContinuousError as exc:
            raise CommandError(str(exc)) from None
    if args.report and Path(args.report).is_dir():
        raise CommandError(f"--report {args.report}: is a directory; name a file to write")


def cmd_dedupe(args: argparse.Namespace, logger: UsageLogger) -> int:
    count = logger.db.deduplicate(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    _emit(args, {"duplicates": count, "dry_run": args.dry_run}, f"{verb} {count} duplicate records")
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    """``db migrate`` and ``db retention`` open the store themselves (migrating on purpose)."""
    target = resolve_target(args.db)
    store = open_store(target, migrate=True)
    try:
        if args.db_command == "migrate":
            version = store.schema_version()
            _emit(
                args,
                {"schema_version": version},
                f"{_describe_target(target)}: schema version {version}",
            )
            return EXIT_OK
        if not 0 <= args.keep_days <= MAX_KEEP_DAYS:
            raise CommandError(
                f"--keep-days must be between 0 and {MAX_KEEP_DAYS}, got {args.keep_days}"
            )
        cutoff = utc_now() - timedelta(days=args.keep_days)
        archive = Path(args.archive).expanduser() if args.archive else None
        result = store.drop_before(cutoff, archive=archive)
        text = (
            f"removed {result['removed_records']} records older than {format_timestamp(cutoff)}"
            + (f" ({len(result['dropped_partitions'])} partitions dropped)"
               if result["dropped_partitions"] else "")
            + (f"; archived {result['archived_records']} to {archive}"
               if archive and result["archived_records"]
               else "; nothing to archive, no file written" if archive else "")
        )  # fmt: skip
        _emit(args, result | {"cutoff": format_timestamp(cutoff)}, text)
        return EXIT_OK
    finally:
        store.close()


def _describe_target(target: str | Path) -> str:
    if is_postgres_url(target):
        return "PostgreSQL"
    return str(target)


def cmd_score(args: argparse.Namespace, logger: UsageLogger) -> int:
    count = logger.score_unscored(HeuristicScorer(), batch_size=args.batch_size)
    _emit(args, {"scored": count}, f"scored {count} records with the heuristic scorer")
    return EXIT_OK


# --- parser --------------------------------------------------------------------------


def _feedback_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 99
    if value not in (-1, 0, 1):
        raise argparse.ArgumentTypeError(f"feedback must be -1, 0 or 1, got {text!r}")
    return value


def _common_options(*, top_level: bool) -> argparse.ArgumentParser:
    """``--db`` and ``--json``, accepted before or after the command.

    Subcommands get their own copies with suppressed defaults, so a value given before
    the command is not overwritten by the subcommand's default (argparse shares Action
    objects between parents, so one copy cannot serve both).
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", default=None if top_level else argparse.SUPPRESS,
        help="SQLite file, sqlite:/// or postgresql:// URL holding usage records (default: "
        f"$AFS_DATABASE_URL, else {DEFAULT_DB_PATH})",
    )  # fmt: skip
    common.add_argument(
        "--json", action="store_true", default=False if top_level else argparse.SUPPRESS,
        help="print JSON output",
    )  # fmt: skip
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="afs-continuous",
        description="Continuous learning: log model usage, inspect it, export training data.",
        parents=[_common_options(top_level=True)],
    )
    common = _common_options(top_level=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument("--tokens", type=int, help="tokens generated")
    p.add_argument("--feedback", type=_feedback_value, help="-1, 0 or 1")
    p.add_argument("--error", action="store_true", help="the request failed")
    p.set_defaults(handler=cmd_log, creates_db=True)

    p = sub.add_parser(
        "feedback", parents=[common], help="record feedback on a logged record",
        description="Thumbs up (1), neutral (0) or down (-1) on a record, by the id `log` "
        "printed; exit 1 if no record has that id.",
    )  # fmt: skip
    p.add_argument("record_id", help="the record's id")
    p.add_argument("value", type=_feedback_value, help="1 good, 0 neutral, -1 bad")
    p.add_argument("--text", help="free-text feedback")
    p.set_defaults(handler=cmd_feedback)

    p = sub.add_parser(
        "import", parents=[common],
        help="import usage records from JSON Lines (all or nothing)",
        description="Each line is a JSON object with query, response, model and optionally "
        "expert, latency_ms, token_count, quality_score, user_feedback, feedback_text, "
        "timestamp, id, context. Any invalid line aborts the import; nothing is written.",
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
    p.add_argument("--limit", type=_count, default=20, help="at most this many (default 20)")
    p.set_defaults(handler=cmd_records)

    p = sub.add_parser(
        "export", parents=[common],
        help="generate a training-data file from usage records",
        description="Filters, de-duplicates and writes training samples (JSON Lines). "
        "Settings come from --config (JSON or YAML: DataGeneratorConfig keys, or a loop "
        "config's generator_config section) and are overridden by the flags.",
    )  # fmt: skip
    p.add_argument("output", help="output .jsonl path (written atomically)")
    p.add_argument("--config", help="JSON or YAML file with generator settings")
    p.add_argument("--since", help="only records since (ISO-8601 or look-back such as 7d)")
    p.add_argument("--min-quality", type=float, help="minimum quality score (0 disables)")
    p.add_argument(
        "--min-feedback", choices=["-1", "0", "1", "none"],
        help="minimum feedback (1 positive only; none disables the filter)",
    )  # fmt: skip
    p.add_argument(
        "--format", choices=["chatml", "alpaca", "completion", "openai"],
        help="sample format (default chatml)",
    )  # fmt: skip
    p.add_argument("--max-samples", type=_count, help="at most this many, the best first")
    p.add_argument("--model", help="only this model's records")
    p.add_argument("--expert", help="only this expert's records")
    p.add_argument("--existing", help="rehearsal buffer (.jsonl) to merge into the output")
    p.add_argument("--no-existing", action="store_true", help="do not merge a rehearsal buffer")
    p.add_argument("--no-dedupe", action="store_true", help="keep duplicate samples")
    p.add_argument(
        "--report",
        help="also write the result (with the file's sha256) as JSON to this path, e.g. "
        "/dev/termination-log in a Kubernetes init container",
    )
    p.add_argument(
        "--upload", metavar="URL",
        help="then copy the file to this object-storage URL (s3://, gs://, az://…; needs "
        "the storage extra; credentials from the environment)",
    )  # fmt: skip
    p.add_argument(
        "--redact", action="store_true",
        help="redact personal data and secrets in every sample (needs the privacy extra)",
    )  # fmt: skip
    p.add_argument(
        "--redact-entities", metavar="TYPES",
        help=f"comma-separated entity types to redact (implies --redact; default: "
        f"{','.join(DEFAULT_ENTITIES)})",
    )  # fmt: skip
    p.add_argument(
        "--redact-operator", choices=["replace", "hash", "drop"],
        help="replace with <TYPE> (default), a keyed hash (key in AFS_REDACTION_KEY), or drop "
        "the sample (implies --redact)",
    )  # fmt: skip
    p.add_argument("--dataset-id", help="record the membership under this id (default: a new one)")
    p.add_argument("--model-version", help="what will train on this data set, for lineage")
    p.add_argument(
        "--no-membership", action="store_true",
        help="do not record which records the export took (a read-only database)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_export, prepare=_prepare_export)

    p = sub.add_parser(
        "dedupe", parents=[common], help="delete duplicate records, keep the best",
        description="Records with the same normalised query and response are duplicates; "
        "the best (quality, then feedback, then newest) is kept.",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="only count them")
    p.set_defaults(handler=cmd_dedupe)

    for mode, help_text in (
        ("run", "run the continuous-learning loop (until stopped or --max-iterations)"),
        ("status", "print the loop's status (creates nothing)"),
        ("trigger", "force a retrain now, then judge any A/B test"),
    ):
        p = sub.add_parser(mode, parents=[common], help=help_text, description=help_text)
        add_loop_options(p, with_db=False, training=mode != "status")
        p.set_defaults(loop_mode=mode)

    p = sub.add_parser(
        "demo", help="watch the whole cycle on simulated traffic (under a minute)", add_help=False
    )
    p.set_defaults(demo=True)

    sub.add_parser(
        "crds", help="write the CustomResourceDefinitions generated from the API models",
        add_help=False,
    )  # fmt: skip
    sub.add_parser(
        "operator", help="run the Kubernetes operator (LearningLoop → Job → ModelVersion)",
        add_help=False,
    )  # fmt: skip
    sub.add_parser(
        "abtest", help="the operator's A/B tests: list, status, promote, abort", add_help=False
    )
    sub.add_parser(
        "collect", help="receive usage and feedback over HTTP (native API, KServe, OpenAI)",
        add_help=False,
    )  # fmt: skip

    add_privacy_commands(sub, common)

    p = sub.add_parser("db", help="database maintenance: migrate, retention")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    q = db_sub.add_parser(
        "migrate", parents=[common], help="create or upgrade the schema (idempotent)",
        description="Create the database or bring its schema to this version; safe to run "
        "again, and from two processes at once. Prints the schema version.",
    )  # fmt: skip
    q.set_defaults(store_command=cmd_db, creates_db=True)
    q = db_sub.add_parser(
        "retention", parents=[common],
        help="remove records older than --keep-days (PostgreSQL: drops whole day partitions)",
    )  # fmt: skip
    q.add_argument("--keep-days", type=int, required=True, help="days of history to keep")
    q.add_argument("--archive", help="append removed records to this .jsonl.gz first")
    q.set_defaults(store_command=cmd_db)

    p = sub.add_parser(
        "score", parents=[common], help="score unscored records (heuristic)",
        description="Give every record without a quality score one from the built-in "
        "heuristic scorer (substance, relevance to the query, variety, no refusal).",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=_positive_count, default=500,
        help="records scored per transaction (default 500)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_score)
    return parser


#: the largest count a flag takes (beyond, databases' integers overflow)
MAX_COUNT = 1_000_000_000


def _count(text: str) -> int:
    """An argparse type: a whole number up to :data:`MAX_COUNT` (a negative one is left
    to the command, which refuses it with its own message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_COUNT}, got {text}")
    return value


def _positive_count(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


#: a hundred years: further back, dates leave the calendar
MAX_KEEP_DAYS = 36_500


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["demo"]:  # the demo has its own options and --help
        from afs.continuous.demo import main as demo_main

        return demo_main(arguments[1:])
    if arguments[:1] == ["operator"]:
        from afs.continuous.kube.operator import main as operator_main

        return operator_main(arguments[1:])
    if arguments[:1] == ["abtest"]:
        from afs.continuous.kube.abtest_cli import main as abtest_main

        return abtest_main(arguments[1:])
    if arguments[:1] == ["collect"]:
        from afs.continuous.collector.cli import main as collect_main

        return collect_main(arguments[1:])
    if arguments[:1] == ["crds"]:
        from afs.continuous.kube.crds import main as crds_main

        return crds_main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    try:
        if getattr(args, "loop_mode", None) is not None:
            args.loop_db = args.db
            return run_loop_command(args, args.loop_mode)
        if getattr(args, "prepare", None) is not None:  # the arguments first: no I/O
            args.prepare(args)
        if not getattr(args, "creates_db", False):
            require_database(resolve_target(args.db), flag="--db")
        if getattr(args, "store_command", None) is not None:
            return int(args.store_command(args))
        with UsageLogger(args.db) as logger:
            return int(args.handler(args, logger))
    except CommandError as exc:
        print(f"afs-continuous: error: {exc}", file=sys.stderr)
        return exc.code
    except (ContinuousError, ConfigError, ValueError, OSError) as exc:
        print(f"afs-continuous: error: {exc}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    raise SystemExit(main())
