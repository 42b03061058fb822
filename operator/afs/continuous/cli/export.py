"""Commands that write training data or tidy the records: ``export``, ``dedupe``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from afs.continuous.argtypes import count
from afs.continuous.cli.common import EXIT_OK, CommandError, emit, since_arg
from afs.continuous.config import DataGeneratorConfig, build_config, load_config_file
from afs.continuous.errors import ContinuousError, strip_credentials
from afs.continuous.generator import TrainingDataGenerator
from afs.continuous.logger import UsageLogger
from afs.continuous.privacy.options import add_redaction_options, redaction_options
from afs.continuous.splits import parse_split
from afs.continuous.storage import check_upload_url, upload


def generator_config(args: argparse.Namespace) -> DataGeneratorConfig:
    values: dict[str, Any] = {}
    if args.config:
        data = load_config_file(args.config)
        section = data.get("generator_config", data) if "generator_config" in data else data
        if not isinstance(section, dict):
            where = "its generator_config" if "generator_config" in data else "it"
            raise CommandError(
                f"--config {args.config}: {where} must be a mapping of DataGeneratorConfig "
                f"keys, got {type(section).__name__}"
            )
        values.update(section)
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
    if args.expert_model:
        values["expert_models"] = tuple(args.expert_model)
    if args.provenance:
        values["include_provenance"] = True
    if args.split is not None:
        values["split"] = parse_split(args.split)
    if args.golden is not None:
        values["golden_path"] = args.golden
    asked = redaction_options(args)
    if asked is not None:
        values["redaction"] = dict(values.get("redaction") or {}) | asked
    return build_config(DataGeneratorConfig, values, source=args.config or "export options")


def _rescore(spec: str, logger: UsageLogger) -> dict[str, Any]:
    """Score the unscored records first: with a scorer by name, or ``discriminator`` (one
    trained on this database's verdicts now; the heuristic when there are too few)."""
    from afs.continuous.scoring import HeuristicScorer, scorer_from_spec, training_examples

    report: dict[str, Any] = {"scorer": spec.partition("?")[0]}
    if spec == "discriminator":
        from afs.continuous.scoring.discriminator import DiscriminatorError, DiscriminatorScorer

        try:
            trained = DiscriminatorScorer.train(training_examples(logger.store))
        except DiscriminatorError as exc:
            scorer: Any = HeuristicScorer()
            report |= {"scorer": "heuristic", "fallback": str(exc)}
        else:
            scorer = trained
            report["discriminator"] = trained.report.to_dict() if trained.report else None
    else:
        scorer = scorer_from_spec(spec)
    report["scored"] = logger.score_unscored(scorer)
    return report


def cmd_export(args: argparse.Namespace, logger: UsageLogger) -> int:
    config: DataGeneratorConfig = args.generator_config
    scoring = _rescore(args.score, logger) if args.score else None
    result = TrainingDataGenerator(logger, config).generate(
        args.output, since=since_arg(args.since), progress=True,
        dataset_id=args.dataset_id, model_version=args.model_version,
        held_out_only=args.held_out_only,
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
    if result.split is not None and result.split_paths is not None:
        held = ", ".join(
            f"{name} {result.split[name]} to {path}" for name, path in result.split_paths.items()
        )
        text += f"\n  held out: {held}"
    if result.preference_sources is not None:
        made = ", ".join(f"{k} {v}" for k, v in result.preference_sources.items()) or "none"
        text += f"\n  {config.format_type} lines by source: {made}"
    if result.decontaminated:
        removed = ", ".join(f"{name} {n}" for name, n in result.decontaminated.items())
        text += f"\n  training items equal to held-out ones, left out: {removed}"
    if result.dataset_id is not None:
        text += f"\n  membership recorded as data set {result.dataset_id}"
    data = result.to_dict()
    if scoring is not None:
        data["scoring"] = scoring
        text += f"\n  scored {scoring['scored']} unscored records first ({scoring['scorer']})"
    if args.upload:
        upload(result.output_path, args.upload)
        data["uri"] = strip_credentials(args.upload)
        text += f"\n  uploaded to {data['uri']}"
    if args.report:
        Path(args.report).write_text(json.dumps(data), encoding="utf-8")
    emit(args, data, text)
    return EXIT_OK


def prepare_export(args: argparse.Namespace) -> None:
    """Check the export settings before the database is opened or any file touched."""
    parent = Path(args.output).expanduser().parent
    if not args.parents and not parent.is_dir():
        raise CommandError(f"{args.output}: no directory {parent}; create it, or pass --parents")
    args.generator_config = generator_config(args)
    if args.generator_config.redaction is not None:
        args.generator_config.redaction.key()  # the hash operator's key, before any I/O
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
    emit(args, {"duplicates": count, "dry_run": args.dry_run}, f"{verb} {count} duplicate records")
    return EXIT_OK


def add_export_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "export", parents=[common],
        help="generate a training-data file from usage records",
        description="Filters, de-duplicates and writes training samples (JSON Lines). "
        "Settings come from --config (JSON or YAML: DataGeneratorConfig keys, or a loop "
        "config's generator_config section) and are overridden by the flags.",
    )  # fmt: skip
    p.add_argument("output", help="output .jsonl path (written atomically)")
    p.add_argument("--config", help="JSON or YAML file with generator settings")
    p.add_argument(
        "--parents", action="store_true",
        help="create the output's missing directories (as mkdir -p); by default a missing "
        "directory is an error, as for cp",
    )  # fmt: skip
    p.add_argument("--since", help="only records since (ISO-8601 or look-back such as 7d)")
    p.add_argument("--min-quality", type=float, help="minimum quality score (0 disables)")
    p.add_argument(
        "--min-feedback", choices=["-1", "0", "1", "none"],
        help="minimum feedback (1 positive only; none disables the filter)",
    )  # fmt: skip
    p.add_argument(
        "--format", choices=["chatml", "alpaca", "completion", "openai", "dpo", "kto"],
        help="sample format (default chatml); dpo and kto write preference data in TRL's "
        "conversational formats from feedback, quality and corrections",
    )  # fmt: skip
    p.add_argument(
        "--expert-model", action="append", metavar="MODEL",
        help="dpo: a model name whose records are an expert source's answers (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--provenance", action="store_true",
        help="dpo/kto: name each line's source and record ids in its metadata",
    )  # fmt: skip
    p.add_argument("--max-samples", type=count, help="at most this many, the best first")
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
    add_redaction_options(p, what="in every sample", operators=("replace", "hash", "drop"))
    p.add_argument("--dataset-id", help="record the membership under this id (default: a new one)")
    p.add_argument("--model-version", help="what will train on this data set, for lineage")
    p.add_argument(
        "--split", metavar="TRAIN,VALIDATION,TEST",
        help="hold out validation and test sets, e.g. 0.9,0.05,0.05, written beside the output "
        "as NAME.validation.jsonl and NAME.test.jsonl; a record's set follows from its "
        "assignment key (else its conversation's opening, else its content), so it never "
        "changes as data grows",
    )  # fmt: skip
    p.add_argument(
        "--held-out-only", action="store_true",
        help="with --split: write only the validation and test sets (an evaluator's data)",
    )  # fmt: skip
    p.add_argument(
        "--golden", metavar="FILE",
        help="a golden set (JSON Lines samples): never exported; training items equal to one "
        "of its items are left out",
    )  # fmt: skip
    p.add_argument(
        "--score", metavar="SPEC",
        help="first score the records that have no quality score: heuristic, discriminator "
        "(trained now on this database's thumbs and corrections; the heuristic if too few), "
        "discriminator:MODEL or judge:URL?model=NAME",
    )  # fmt: skip
    p.add_argument(
        "--no-membership", action="store_true",
        help="do not record which records the export took (a read-only database)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_export, prepare=prepare_export)

    p = sub.add_parser(
        "dedupe", parents=[common], help="delete duplicate records, keep the best",
        description="Records with the same normalised query and response are duplicates; "
        "the best (quality, then feedback, then newest) is kept.",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="only count them")
    p.set_defaults(handler=cmd_dedupe)
