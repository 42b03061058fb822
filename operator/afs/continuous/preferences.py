"""Preference data from what users and experts said: DPO pairs and KTO examples in TRL's
conversational formats.

- DPO (``{"prompt": [...], "chosen": [assistant], "rejected": [assistant]}``), from
  (a) a correction: chosen = the corrected answer, rejected = the response;
  (b) answers to the same prompt (the conversation before the answer) with different
  verdicts: positive against negative feedback, or quality apart by at least a margin;
  (c) an expert source's answer (a ``model`` listed in ``expert_models``) as chosen against
  a failed model answer to the same prompt.
- KTO (``{"prompt": [...], "completion": [assistant], "label": bool}``), from thumbs up and
  down, a correction being a desirable completion (and the response it corrects, an
  undesirable one).

Pairing is pure and deterministic: the same records give the same pairs in the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from afs.continuous.conversations import canonical

PairSource = Literal["correction", "feedback", "quality", "expert"]


def prompt_key(prompt: list[dict[str, Any]]) -> str:
    """What groups answers to the same prompt, and places a prompt's items in one split."""
    return hashlib.sha256(canonical(prompt).encode()).hexdigest()


#: an answer with at most this quality failed, for pairing an expert's answer against it
FAILED_QUALITY = 0.5


@dataclass(frozen=True)
class Candidate:
    """One logged answer and what was said of it."""

    record_id: str
    timestamp: str
    prompt: list[dict[str, Any]]
    """The messages before the answer (the query alone as a user message when the record
    has no conversation)."""
    answer: dict[str, Any]
    model: str
    feedback: int | None = None
    quality: float | None = None
    correction: dict[str, Any] | None = None
    expert: bool = False
    """Given by an expert source (its ``model`` is one of ``expert_models``)."""

    @property
    def prompt_key(self) -> str:
        return prompt_key(self.prompt)

    @property
    def failed(self) -> bool:
        return self.feedback == -1 or (self.quality is not None and self.quality <= FAILED_QUALITY)


@dataclass(frozen=True)
class Pair:
    prompt: list[dict[str, Any]]
    chosen: dict[str, Any]
    rejected: dict[str, Any]
    source: PairSource
    record_ids: tuple[str, ...]

    def digest(self) -> str:
        return hashlib.sha256(
            canonical([self.prompt, self.chosen, self.rejected]).encode()
        ).hexdigest()

    def line(self, *, provenance: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt": self.prompt, "chosen": [self.chosen], "rejected": [self.rejected],
        }  # fmt: skip
        if provenance:
            out["metadata"] = {"source": self.source, "record_ids": list(self.record_ids)}
        return out


@dataclass(frozen=True)
class Example:
    prompt: list[dict[str, Any]]
    completion: dict[str, Any]
    label: bool
    source: Literal["feedback", "correction"]
    record_ids: tuple[str, ...]

    def digest(self) -> str:
        return hashlib.sha256(
            canonical([self.prompt, self.completion, self.label]).encode()
        ).hexdigest()

    def line(self, *, provenance: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt": self.prompt, "completion": [self.completion], "label": self.label,
        }  # fmt: skip
        if provenance:
            out["metadata"] = {"source": self.source, "record_ids": list(self.record_ids)}
        return out


def _rank(candidate: Candidate) -> tuple[Any, ...]:
    """Best first: positive feedback, then quality, then the newest, then the id."""
    return (
        -(candidate.feedback or 0),
        -(candidate.quality if candidate.quality is not None else -1.0),
        _reverse(candidate.timestamp),
        candidate.record_id,
    )


def _reverse(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return canonical(a) == canonical(b)


@dataclass
class _Group:
    members: list[Candidate] = field(default_factory=list)


def dpo_pairs(
    candidates: Iterable[Candidate], *, margin: float, max_per_prompt: int
) -> Iterator[Pair]:
    """Every prompt's pairs, corrections first, then feedback, quality and experts; at
    most ``max_per_prompt`` a prompt, each record in at most one pair of each source."""
    groups: dict[str, _Group] = {}
    for candidate in candidates:
        groups.setdefault(candidate.prompt_key, _Group()).members.append(candidate)
    for key in sorted(groups):
        members = sorted(groups[key].members, key=_rank)
        yield from _prompt_pairs(members, margin=margin, limit=max_per_prompt)


def _prompt_pairs(members: list[Candidate], *, margin: float, limit: int) -> Iterator[Pair]:
    made = 0
    models = [m for m in members if not m.expert]
    experts = [m for m in members if m.expert and not m.failed]

    def pair(
        chosen: dict[str, Any], rejected: Candidate, source: PairSource, *ids: str
    ) -> Pair | None:
        if _same(chosen, rejected.answer):
            return None
        return Pair(rejected.prompt, chosen, rejected.answer, source, (*ids, rejected.record_id))

    found: list[Pair | None] = []
    for member in models:
        if member.correction is not None:
            found.append(pair(member.correction, member, "correction", member.record_id))
    good = [m for m in models if m.feedback == 1]
    bad = [m for m in reversed(models) if m.feedback == -1]
    for chosen, rejected in zip(good, bad, strict=False):
        found.append(pair(chosen.answer, rejected, "feedback", chosen.record_id))
    scored = [m for m in models if m.quality is not None and m.feedback is None]
    if len(scored) >= 2:
        best, worst = scored[0], scored[-1]
        assert best.quality is not None and worst.quality is not None
        if best.quality - worst.quality >= margin:
            found.append(pair(best.answer, worst, "quality", best.record_id))
    failed = [m for m in reversed(models) if m.failed]
    for expert, rejected in zip(experts, failed, strict=False):
        found.append(pair(expert.answer, rejected, "expert", expert.record_id))
    for item in found:
        if item is not None and made < limit:
            made += 1
            yield item


def kto_examples(candidates: Iterable[Candidate]) -> Iterator[Example]:
    """A labelled completion for each thumbs up or down of a model's answer, and for each
    correction (desirable) and the answer it corrects (undesirable, unless thumbs-down
    already said so)."""
    for candidate in sorted(candidates, key=lambda c: (c.prompt_key, _rank(c))):
        if candidate.expert:
            continue
        ids = (candidate.record_id,)
        if candidate.feedback in (1, -1):
            yield Example(candidate.prompt, candidate.answer, candidate.feedback == 1, "feedback",
                          ids)  # fmt: skip
        if candidate.correction is not None:
            yield Example(candidate.prompt, candidate.correction, True, "correction", ids)
            if candidate.feedback != -1:
                yield Example(candidate.prompt, candidate.answer, False, "correction", ids)
