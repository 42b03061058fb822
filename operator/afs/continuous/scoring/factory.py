"""Scorers by name (``heuristic``, ``discriminator:PATH``), and the examples a
discriminator learns from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from afs.continuous.conversations import text_of
from afs.continuous.scoring.base import Scorer
from afs.continuous.scoring.heuristic import HeuristicScorer
from afs.continuous.store import RecordQuery, UsageStore

SPECS = "heuristic, discriminator:MODEL"


def scorer_from_spec(spec: str) -> Scorer:
    """``heuristic`` or ``discriminator:PATH`` (a model ``score --train-discriminator``
    saved); ValueError naming what is wrong."""
    kind, _, argument = spec.partition(":")
    if kind == "heuristic" and not argument:
        return HeuristicScorer()
    if kind == "discriminator" and argument:
        from afs.continuous.scoring.discriminator import DiscriminatorScorer

        return DiscriminatorScorer.load(argument)
    raise ValueError(f"--scorer {spec!r}: expected one of {SPECS}")


def training_examples(store: UsageStore) -> Iterator[tuple[str, str, int]]:
    """``(query, response, label)`` from the users' verdicts: thumbs up 1, thumbs down 0;
    a response someone corrected 0, and the correction 1."""
    corrections = store.corrections()
    for record in store.iter_records(RecordQuery(newest_first=False)):
        fix: dict[str, Any] | None = corrections.get(record.id)
        if fix is not None:
            yield record.query, record.response, 0
            text = text_of(fix.get("content"))
            if text:
                yield record.query, text, 1
        elif record.user_feedback in (1, -1):
            yield record.query, record.response, int(record.user_feedback == 1)
