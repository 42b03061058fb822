"""Database maintenance: ``db migrate``, ``db retention``, ``score``."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

from afs.continuous.argtypes import positive_count, whole_number
from afs.continuous.cli.common import EXIT_OK, emit
from afs.continuous.logger import UsageLogger
from afs.continuous.scoring import scorer_from_spec, training_examples
from afs.continuous.store import is_postgres_url, open_store, resolve_target
from afs.continuous.timeutil import format_timestamp, utc_now

#: a hundred years: further back, dates leave the calendar
MAX_KEEP_DAYS = 36_500


def cmd_db(args: argparse.Namespace) -> int:
    """``db migrate`` and ``db retention`` open the store themselves (migrating on purpose)."""
    target = resolve_target(args.db)
    store = open_store(target, migrate=True)
    try:
        if args.db_command == "migrate":
            version = store.schema_version()
            emit(
                args,
                {"schema_version": version},
                f"{describe_target(target)}: schema version {version}",
            )
            return EXIT_OK
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
        emit(args, result | {"cutoff": format_timestamp(cutoff)}, text)
        return EXIT_OK
    finally:
        store.close()


def describe_target(target: str | Path) -> str:
    if is_postgres_url(target):
        return "PostgreSQL"
    return str(target)


def cmd_score(args: argparse.Namespace, logger: UsageLogger) -> int:
    if args.train_discriminator is not None:
        from afs.continuous.scoring.discriminator import DiscriminatorScorer

        trained = DiscriminatorScorer.train(training_examples(logger.store))
        trained.save(args.train_discriminator)
        assert trained.report is not None
        report = trained.report.to_dict() | {"model": args.train_discriminator}
        emit(args, report, (
            f"trained a discriminator on {report['examples']} answers with feedback "
            f"({report['positives']} good, {report['negatives']} bad) in "
            f"{report['seconds']:.1f} s: cross-validated ROC AUC {report['cv_roc_auc']:.3f}, "
            f"Brier {report['brier']:.3f}, calibration error {report['calibration_error']:.3f}"
            f"\nsaved to {args.train_discriminator}; score with --scorer "
            f"discriminator:{args.train_discriminator}"
        ))  # fmt: skip
        return EXIT_OK
    scorer = scorer_from_spec(args.scorer)
    count = logger.score_unscored(scorer, batch_size=args.batch_size)
    data: dict[str, Any] = {"scored": count, "scorer": args.scorer.partition("?")[0]}
    text = f"scored {count} records with the {data['scorer']} scorer"
    usage = getattr(scorer, "usage", None)
    if usage is not None:  # a judge: what it cost
        data["usage"] = usage.to_dict()
        text += (f" ({usage.calls} calls, {usage.retries} retries, "
                 f"{usage.prompt_tokens + usage.completion_tokens} tokens)")  # fmt: skip
    emit(args, data, text)
    return EXIT_OK


def add_maintenance_commands(sub: Any, common: argparse.ArgumentParser) -> None:
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
    q.add_argument(
        "--keep-days", type=whole_number(0, MAX_KEEP_DAYS, what="a number of days"), required=True,
        help="days of history to keep",
    )  # fmt: skip
    q.add_argument("--archive", help="append removed records to this .jsonl.gz first")
    q.set_defaults(store_command=cmd_db)

    p = sub.add_parser(
        "score", parents=[common], help="score unscored records, or train a discriminator",
        description="Give every record without a quality score one from --scorer: the "
        "built-in heuristic (substance, relevance to the query, variety, no refusal), or a "
        "discriminator trained on the users' own verdicts (--train-discriminator MODEL "
        "trains one from the records with thumbs and corrections, then --scorer "
        "discriminator:MODEL scores with it; needs the scoring extra).",
    )  # fmt: skip
    p.add_argument(
        "--scorer", default="heuristic", metavar="SPEC",
        help="heuristic (default), discriminator:MODEL, or judge:URL?model=NAME (an "
        "OpenAI-compatible endpoint; its key in AFS_JUDGE_API_KEY)",
    )  # fmt: skip
    p.add_argument(
        "--train-discriminator", metavar="MODEL",
        help="train a discriminator on the records' feedback and corrections, save it to "
        "MODEL (a skops file) and print its cross-validated ROC AUC and calibration",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=positive_count, default=500,
        help="records scored per transaction (default 500)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_score)
