"""Training-data generation: production usage records → a JSONL training file.

Filtering and de-duplication run in the database; rows are streamed to a temporary file
next to the output, which replaces the output only when complete. Memory stays flat as
history grows (the original loaded every record), and a failure leaves any previous
output untouched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import stat
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tqdm import tqdm

from afs.continuous.atomic import atomic_file
from afs.continuous.config import PREFERENCE_FORMATS, DataGeneratorConfig
from afs.continuous.errors import InvalidFieldError, SampleFormatError
from afs.continuous.formats import Sample, format_sample, parse_sample, sample_digest
from afs.continuous.logger import UsageDatabase, UsageLogger
from afs.continuous.privacy.membership import DatasetEntry, encode_members
from afs.continuous.records import check_text, compute_dedupe_hash
from afs.continuous.splits import SPLITS, SplitName, assign_split, split_key, split_path
from afs.continuous.store import TrainingSelection, UsageStore
from afs.continuous.store.base import TrainingRow
from afs.continuous.timeutil import format_timestamp, parse_timestamp, utc_now

if TYPE_CHECKING:
    from afs.continuous.privacy.redactor import Redactor

log = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    """What a generation run did, counted at each filter.

    ``duplicates_removed`` counts usage records dropped as duplicates of a better one,
    plus usage samples and rehearsal samples dropped as duplicates of rehearsal samples.
    ``existing_samples`` is how many rehearsal samples were written (part of
    ``final_count``). ``output_path`` is a ``Path``, as in the original API (callers do
    ``result.output_path.exists()``); ``to_dict`` gives it as text for JSON.
    """

    total_candidates: int
    filtered_by_quality: int
    filtered_by_feedback: int
    duplicates_removed: int
    final_count: int
    output_path: Path
    quality_stats: dict[str, float]
    timestamp: str
    existing_samples: int = 0
    format_type: str = "chatml"
    usage_samples: int = field(default=0)
    sha256: str | None = None
    """The written file's SHA-256 (hex)."""
    dataset_id: str | None = None
    """The id its membership is recorded under (None: not recorded)."""
    redaction: dict[str, Any] | None = None
    """What redaction found: ``entities`` (count per type), ``records_redacted``,
    ``records_dropped``, the configuration's ``fingerprint`` (None: not redacted)."""
    split: dict[str, int] | None = None
    """Samples written to each of ``train``, ``validation``, ``test`` (None: not split;
    ``final_count`` is the training set's)."""
    split_paths: dict[str, str] | None = None
    """Where the held-out sets were written (``validation``, ``test``)."""
    preference_sources: dict[str, int] | None = None
    """``dpo``: pairs by source (``correction``, ``feedback``, ``quality``, ``expert``);
    ``kto``: examples by source and label (None for the other formats)."""
    decontaminated: dict[str, int] | None = None
    """Training items left out for equalling a ``golden``, ``test`` or ``validation``
    item (None: nothing held out to compare with)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"output_path": str(self.output_path)}


class _QualityStats:
    """Running count, mean, spread and range of the written samples' quality scores."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.sq_total = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, value: float | None) -> None:
        if value is None:
            return
        self.count += 1
        self.total += value
        self.sq_total += value * value
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    def as_dict(self) -> dict[str, float]:
        if not self.count:
            return {"count": 0}
        mean = self.total / self.count
        variance = max(0.0, self.sq_total / self.count - mean * mean)
        return {
            "count": self.count,
            "mean": round(mean, 6),
            "std": round(math.sqrt(variance), 6),
            "min": self.low,
            "max": self.high,
        }


class TrainingDataGenerator:
    """Turns logged usage into training samples (see the seed, "Generate Training Data")."""

    def __init__(
        self,
        usage_logger: UsageLogger | UsageDatabase,
        config: DataGeneratorConfig | None = None,
    ) -> None:
        self.usage_logger = usage_logger
        self.config = config if config is not None else DataGeneratorConfig()

    @property
    def store(self) -> UsageStore:
        return self.usage_logger.store

    def selection(self, since: datetime | str | None = None) -> TrainingSelection:
        """The store-level filter this generator applies (also used by triggers)."""
        cfg = self.config
        return TrainingSelection(
            since=None if since is None else parse_timestamp(since, field="since"),
            min_quality=cfg.min_quality_score,
            min_feedback=cfg.min_user_feedback,
            deduplicate=cfg.deduplicate,
            max_samples=cfg.max_samples,
            model=cfg.model,
            expert=cfg.expert,
        )

    def generate(
        self,
        output_path: str | Path,
        since: datetime | str | None = None,
        *,
        progress: bool = False,
        dataset_id: str | None = None,
        model_version: str | None = None,
        held_out_only: bool = False,
    ) -> GenerationResult:
        """Write the training file and report the counts.

        ``progress=True`` shows a progress bar on a terminal when the export takes
        more than a second. Unless the configuration says otherwise, the records taken
        are recorded as the data set ``dataset_id`` (by default a new id), trained on by
        ``model_version`` when it is known (see :meth:`UsageStore.label_dataset`).
        ``held_out_only``: write the validation and test sets only (an evaluator's), not
        the training set; the export must be split.
        """
        if not isinstance(output_path, str | Path) or not str(output_path).strip():
            raise InvalidFieldError("output_path", output_path, "must be a file path")
        for name, value in (("dataset_id", dataset_id), ("model_version", model_version)):
            if value is not None:
                check_text(name, value, max_chars=512)
        cfg = self.config
        if cfg.format_type in PREFERENCE_FORMATS:
            from afs.continuous.preference_export import export_preferences

            return export_preferences(
                self, output_path, since, dataset_id=dataset_id, model_version=model_version,
                held_out_only=held_out_only,
            )  # fmt: skip
        if held_out_only and cfg.split is None:
            raise InvalidFieldError("held_out_only", True, "needs a split to hold sets out")
        selection = self.selection(since)
        output = Path(output_path).expanduser()
        existing_path = self._existing_path(cfg)
        output.parent.mkdir(parents=True, exist_ok=True)

        redactor = _redactor(cfg)
        golden = self._golden_digests(cfg)
        held_out = self._held_out_digests(selection, cfg.split)
        members: list[str] = []
        counts = self.store.selection_counts(selection)
        stats = _QualityStats()
        seen: set[str] = set()
        duplicates = counts.accepted - counts.distinct_accepted if cfg.deduplicate else 0
        existing_written = 0
        removed: Counter[str] = Counter()

        def contaminated(sample_hash: str) -> bool:
            """A training item equal to a golden or held-out one: removed, counted."""
            for name, digests in (("golden", golden), *held_out.items()):
                if sample_hash in digests:
                    removed[name] += 1
                    return True
            return False

        with ExitStack() as stack:
            files = SplitFiles(stack, output, cfg, held_out_only=held_out_only)
            if existing_path is not None:
                for sample in _read_samples(existing_path):
                    sample_hash = sample_digest(sample)
                    if cfg.deduplicate and sample_hash in seen:
                        duplicates += 1
                        continue
                    seen.add(sample_hash)
                    if contaminated(sample_hash):
                        continue
                    written = sample if redactor is None else redactor.redact_sample(sample)
                    if written is None:  # dropped: it held personal data
                        continue
                    files.write("train", written)
                    existing_written += 1
            expected = counts.distinct_accepted if cfg.deduplicate else counts.accepted
            if cfg.max_samples is not None:
                expected = min(expected, cfg.max_samples)
            bar = tqdm(
                total=expected,
                desc="export",
                unit="rec",
                delay=1.0,
                disable=None if progress else True,
                leave=False,
            )
            with bar:
                for row in self.store.iter_training_rows(selection):
                    bar.update()
                    row_hash = _row_digest(row)
                    if cfg.deduplicate and row_hash in seen:
                        duplicates += 1
                        continue
                    split = _split_of(row, cfg.split)
                    if split == "train" and contaminated(row_hash):
                        continue
                    row_sample = Sample(
                        row.query,
                        row.response,
                        quality_score=row.quality_score,
                        user_feedback=row.user_feedback,
                        model=row.model,
                        expert=row.expert,
                        messages=row.messages,
                        tools=row.tools,
                        response_message=row.response_message,
                    )
                    written = row_sample if redactor is None else redactor.redact_sample(row_sample)
                    if written is None:
                        continue
                    files.write(split, written)
                    if split == "train":
                        stats.add(row.quality_score)
                    if row.record_id is not None:
                        members.append(row.record_id)

            # recorded before the files replace the old ones: a data set on disk is never
            # missing from the record (a failed rename leaves an entry naming no file)
            report = None if redactor is None else redactor.take_report().to_dict()
            sha256 = files.digest.hexdigest()
            if cfg.record_membership:
                dataset_id = dataset_id or new_dataset_id(utc_now())
                self.store.record_dataset(
                    DatasetEntry(
                        dataset_id=dataset_id,
                        created_at=format_timestamp(utc_now()),
                        output=str(output.resolve()),
                        format_type=cfg.format_type,
                        record_count=len(members),
                        sha256=sha256,
                        model_version=model_version,
                        redaction=report,
                        members=encode_members(members),
                    )
                )

        usage_written = files.counts["train"] - existing_written
        return GenerationResult(
            total_candidates=counts.total_candidates,
            filtered_by_quality=counts.filtered_by_quality,
            filtered_by_feedback=counts.filtered_by_feedback,
            duplicates_removed=duplicates,
            final_count=files.counts["train"],
            output_path=output,
            quality_stats=stats.as_dict(),
            timestamp=format_timestamp(utc_now()),
            existing_samples=existing_written,
            format_type=cfg.format_type,
            usage_samples=usage_written,
            sha256=sha256,
            dataset_id=dataset_id if cfg.record_membership else None,
            redaction=report,
            split={str(name): n for name, n in files.counts.items()} if cfg.split else None,
            split_paths=files.held_out_paths(),
            decontaminated={name: removed[name] for name in ("golden", *held_out)}
            if cfg.split is not None or golden
            else None,
        )

    def _held_out_digests(
        self, selection: TrainingSelection, ratios: tuple[float, float, float] | None
    ) -> dict[str, set[str]]:
        """The content of every accepted record in the validation and test sets (all of
        them, duplicates included: whoever logged it, that content is held out)."""
        if ratios is None or ratios[0] == 1.0:
            return {}
        digests: dict[str, set[str]] = {"test": set(), "validation": set()}
        every = replace(selection, deduplicate=False, max_samples=None)
        for row in self.store.iter_training_rows(every):
            split = _split_of(row, ratios)
            if split != "train":
                digests[split].add(_row_digest(row))
        return digests

    @staticmethod
    def _golden_digests(cfg: DataGeneratorConfig) -> set[str]:
        if cfg.golden_path is None:
            return set()
        path = Path(cfg.golden_path).expanduser()
        if not path.is_file():
            raise InvalidFieldError("golden_path", str(path), "is not a file")
        return {sample_digest(sample) for sample in _read_samples(path)}

    @staticmethod
    def _existing_path(cfg: DataGeneratorConfig) -> Path | None:
        if not cfg.include_existing_data or cfg.existing_data_path is None:
            return None
        path = Path(cfg.existing_data_path).expanduser()
        if not path.exists():
            log.warning("rehearsal buffer %s does not exist yet; nothing merged", path)
            return None
        if not path.is_file():  # /dev/zero, a FIFO, a directory: no lines to read
            raise InvalidFieldError("existing_data_path", str(path), "is not a regular file")
        return path


class SplitFiles:
    """The files of one export, each written to a temporary file renamed into place only
    when all are complete: the training set at the path given, the held-out sets beside
    it (``dataset.validation.jsonl``, ``dataset.test.jsonl``) when the export is split."""

    def __init__(
        self, stack: ExitStack, output: Path, cfg: DataGeneratorConfig, *, held_out_only: bool
    ) -> None:
        self.paths: dict[SplitName, Path] = {"train": output}
        if cfg.split is not None:
            for name, ratio in zip(SPLITS, cfg.split, strict=True):
                if name != "train" and ratio > 0:
                    self.paths[name] = split_path(output, name)
        self.handles = {name: stack.enter_context(_atomic_writer(path))
                        for name, path in self.paths.items()
                        if not (held_out_only and name == "train")}  # fmt: skip
        self.counts: dict[SplitName, int] = dict.fromkeys(self.paths, 0)
        self.digest = hashlib.sha256()  # the training set's
        self._format, self._train_on = cfg.format_type, cfg.train_on

    def write(self, split: SplitName, sample: Sample) -> None:
        if split not in self.handles:  # the training set of a held-out-only export
            self.counts[split] += 1
            return
        self.write_line(split, format_sample(self._format, sample, train_on=self._train_on))

    def write_line(self, split: SplitName, line: dict[str, Any]) -> None:
        self.counts[split] += 1
        if split not in self.handles:
            return
        text = json.dumps(line, ensure_ascii=False) + "\n"
        self.handles[split].write(text)
        if split == "train":
            self.digest.update(text.encode())

    def held_out_paths(self) -> dict[str, str] | None:
        held = {str(name): str(path) for name, path in self.paths.items() if name != "train"}
        return held or None


def _row_digest(row: TrainingRow) -> str:
    return row.dedupe_hash or compute_dedupe_hash(row.query, row.response, row.conversation_hash)


def _split_of(row: TrainingRow, ratios: tuple[float, float, float] | None) -> SplitName:
    if ratios is None:
        return "train"
    key = split_key(
        record_id=row.record_id or "",
        assignment_hash=row.assignment_hash,
        messages=row.messages,
        tools=row.tools,
        content_hash=_row_digest(row),
    )
    return assign_split(key, ratios)


def _redactor(cfg: DataGeneratorConfig) -> Redactor | None:
    if cfg.redaction is None:
        return None
    from afs.continuous.privacy.redactor import Redactor

    return Redactor(cfg.redaction)


def new_dataset_id(now: datetime) -> str:
    """``ds-20261206T071500Z-1a2b3c4d``: sorts by time, unique per export."""
    return f"ds-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def _read_samples(path: Path) -> Iterator[Sample]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield parse_sample(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SampleFormatError(str(path), number, f"not valid JSON ({exc.msg})") from exc
            except ValueError as exc:
                raise SampleFormatError(str(path), number, str(exc)) from exc


def _check_target(target: Path) -> None:
    """Only a regular file is replaced: renaming over a symlink, a device or a FIFO would
    silently swap a link someone relies on, or a file that is not ours, for our output."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = (
            "a symbolic link" if stat.S_ISLNK(mode)
            else "a directory" if stat.S_ISDIR(mode)
            else "not a regular file"
        )  # fmt: skip
        raise InvalidFieldError("output_path", str(target), f"exists and is {kind}; not replaced")


@contextmanager
def _atomic_writer(target: Path) -> Iterator[IO[str]]:
    """Write to a temporary file beside ``target``; rename over it only on success."""
    _check_target(target)
    with atomic_file(target, buffering=1 << 20) as handle:
        yield handle
