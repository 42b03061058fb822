"""The export of preference data (``format_type`` ``dpo`` or ``kto``): the records with a
verdict (feedback, a quality score or a correction) read, paired by
:mod:`afs.continuous.preferences`, redacted, split and written like any export.

The quality and feedback filters of the other formats do not apply: the bad answers are
what preference training learns from. ``since``, ``model`` and ``expert`` do (an expert
source's records are taken whatever ``model`` says). Memory grows with the records that
have a verdict in the window (they are grouped by prompt before pairing).
"""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afs.continuous.generator import (
    GenerationResult,
    SplitFiles,
    _redactor,
    new_dataset_id,
)
from afs.continuous.preferences import Candidate, dpo_pairs, kto_examples, prompt_key
from afs.continuous.privacy.membership import DatasetEntry, encode_members
from afs.continuous.records import UsageRecord
from afs.continuous.splits import assign_split
from afs.continuous.store import RecordQuery
from afs.continuous.timeutil import format_timestamp, parse_timestamp, utc_now

if TYPE_CHECKING:
    from afs.continuous.generator import TrainingDataGenerator

log = logging.getLogger(__name__)


def _candidate(
    record: UsageRecord, correction: dict[str, Any] | None, experts: set[str]
) -> Candidate:
    prompt = record.messages or [{"role": "user", "content": record.query}]
    answer = record.response_message or {"role": "assistant", "content": record.response}
    return Candidate(
        record_id=record.id, timestamp=record.timestamp, prompt=prompt, answer=answer,
        model=record.model, feedback=record.user_feedback, quality=record.quality_score,
        correction=correction, expert=record.model in experts,
    )  # fmt: skip


def export_preferences(
    generator: TrainingDataGenerator,
    output_path: str | Path,
    since: datetime | str | None,
    *,
    dataset_id: str | None,
    model_version: str | None,
    held_out_only: bool,
) -> GenerationResult:
    cfg = generator.config
    store = generator.store
    output = Path(output_path).expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    if cfg.include_existing_data and cfg.existing_data_path is not None:
        log.warning("a rehearsal buffer holds no preferences: not merged into a %s export",
                    cfg.format_type)  # fmt: skip
    experts = set(cfg.expert_models)
    corrections = store.corrections()
    window = None if since is None else parse_timestamp(since, field="since")
    candidates: list[Candidate] = []
    total = 0
    for record in store.iter_records(RecordQuery(since=window, newest_first=False)):
        total += 1
        expert = record.model in experts
        if not expert and cfg.model is not None and record.model != cfg.model:
            continue
        if not expert and cfg.expert is not None and record.expert != cfg.expert:
            continue
        correction = corrections.get(record.id)
        if record.user_feedback is None and record.quality_score is None and correction is None:
            continue
        candidates.append(_candidate(record, correction, experts))
    items: list[Any] = list(
        dpo_pairs(candidates, margin=cfg.preference_margin, max_per_prompt=cfg.max_pairs_per_prompt)
        if cfg.format_type == "dpo"
        else kto_examples(candidates)
    )
    redactor = _redactor(cfg)
    seen: set[str] = set()
    sources: Counter[str] = Counter()
    members: list[str] = []
    duplicates = 0
    with ExitStack() as stack:
        files = SplitFiles(stack, output, cfg, held_out_only=held_out_only)
        for item in items:
            digest = item.digest()
            if cfg.deduplicate and digest in seen:
                duplicates += 1
                continue
            seen.add(digest)
            if cfg.max_samples is not None and len(seen) > cfg.max_samples:
                break
            if redactor is not None:
                item = _redacted(item, redactor)
                if item is None:
                    continue
            split = (
                "train"
                if cfg.split is None
                else assign_split(f"p:{prompt_key(item.prompt)}", cfg.split)
            )
            files.write_line(split, item.line(provenance=cfg.include_provenance))
            label = item.source if cfg.format_type == "dpo" else (
                f"{item.source}:{'desirable' if item.label else 'undesirable'}")  # fmt: skip
            sources[label] += 1
            members.extend(item.record_ids)
        report = None if redactor is None else redactor.take_report().to_dict()
        sha256 = files.digest.hexdigest()
        if cfg.record_membership:
            dataset_id = dataset_id or new_dataset_id(utc_now())
            store.record_dataset(
                DatasetEntry(
                    dataset_id=dataset_id, created_at=format_timestamp(utc_now()),
                    output=str(output.resolve()), format_type=cfg.format_type,
                    record_count=len(set(members)), sha256=sha256,
                    model_version=model_version, redaction=report,
                    members=encode_members(set(members)),
                )
            )  # fmt: skip
    return GenerationResult(
        total_candidates=total,
        filtered_by_quality=0,
        filtered_by_feedback=total - len(candidates),
        duplicates_removed=duplicates,
        final_count=files.counts["train"],
        output_path=output,
        quality_stats={"count": 0},
        timestamp=format_timestamp(utc_now()),
        format_type=cfg.format_type,
        usage_samples=files.counts["train"],
        sha256=sha256,
        dataset_id=dataset_id if cfg.record_membership else None,
        redaction=report,
        split={str(k): v for k, v in files.counts.items()} if cfg.split else None,
        split_paths=files.held_out_paths(),
        preference_sources=dict(sorted(sources.items())),
    )


def _redacted(item: Any, redactor: Any) -> Any | None:
    """The item with its prompt and answers redacted (None: dropped for what it held)."""
    found: list[str] = []
    prompt = redactor.redact_messages(item.prompt, found)
    if hasattr(item, "chosen"):
        changed = {"chosen": redactor.redact_message(item.chosen, found),
                   "rejected": redactor.redact_message(item.rejected, found)}  # fmt: skip
    else:
        changed = {"completion": redactor.redact_message(item.completion, found)}
    if redactor.settle(item, found) is None:  # counted; dropped by the drop operator
        return None
    return replace(item, prompt=prompt, **changed)
