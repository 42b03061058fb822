"""Scores combined: the seed's "ensemble" of signals, feedback among them.

``EnsembleScorer({scorer: weight, ...})`` is the weighted mean of its scorers; a record's
own feedback, when it has some, is one more signal (``feedback_weight``): thumbs up 1,
neutral 0.5, down 0. ``QualityScorer(config=ScoringConfig()).score_sample(sample).overall``
is the seed's shape of the same thing, for code written against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from afs.continuous.scoring.base import Scorer
from afs.continuous.scoring.heuristic import HeuristicScorer

_FEEDBACK_SCORE = {1: 1.0, 0: 0.5, -1: 0.0}


class EnsembleScorer:
    def __init__(self, scorers: Mapping[Any, float], *, feedback_weight: float = 0.0) -> None:
        if not scorers:
            raise ValueError("EnsembleScorer needs at least one scorer")
        for scorer, weight in scorers.items():
            if not callable(getattr(scorer, "score", None)):
                raise ValueError(f"{scorer!r} has no score(query, response)")
            if not weight > 0:
                raise ValueError(f"the weight of {scorer!r} must be positive, got {weight}")
        if feedback_weight < 0:
            raise ValueError(f"feedback_weight must be at least 0, got {feedback_weight}")
        self.scorers = dict(scorers)
        self.feedback_weight = feedback_weight

    def components(
        self, query: str, response: str, feedback: int | None = None
    ) -> dict[str, float]:
        parts = {
            type(scorer).__name__ if index == 0 or type(scorer).__name__ not in
            {type(s).__name__ for s in list(self.scorers)[:index]}
            else f"{type(scorer).__name__}#{index}": float(scorer.score(query, response))
            for index, scorer in enumerate(self.scorers)
        }  # fmt: skip
        if feedback in _FEEDBACK_SCORE and self.feedback_weight > 0:
            parts["feedback"] = _FEEDBACK_SCORE[feedback]
        return parts

    def score(self, query: str, response: str, feedback: int | None = None) -> float:
        total = weights = 0.0
        for scorer, weight in self.scorers.items():
            total += weight * float(scorer.score(query, response))
            weights += weight
        if feedback in _FEEDBACK_SCORE and self.feedback_weight > 0:
            total += self.feedback_weight * _FEEDBACK_SCORE[feedback]
            weights += self.feedback_weight
        return round(min(1.0, max(0.0, total / weights)), 4)


@dataclass
class ScoringConfig:
    """The seed's scoring configuration: the heuristic's weight, a trained discriminator
    (a path) and its weight, and how much a record's own feedback counts."""

    heuristic_weight: float = 1.0
    discriminator_path: str | None = None
    discriminator_weight: float = 1.0
    feedback_weight: float = 0.0


@dataclass(frozen=True)
class QualityScore:
    overall: float
    components: dict[str, float] = field(default_factory=dict)


class _AnyScorer(type):
    """``isinstance(x, QualityScorer)`` holds for every scorer, as it did when
    ``QualityScorer`` was the scorer protocol (code written then keeps working)."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return callable(getattr(instance, "score", None))


class QualityScorer(metaclass=_AnyScorer):
    """The seed's shape: ``QualityScorer(config=ScoringConfig()).score_sample(sample)
    .overall`` (a sample: anything with ``query`` and ``response``, and optionally
    ``user_feedback``); also a scorer (``score(query, response)``)."""

    def __init__(self, config: ScoringConfig | None = None) -> None:
        self.config = config if config is not None else ScoringConfig()
        scorers: dict[Any, float] = {}
        if self.config.heuristic_weight > 0:
            scorers[HeuristicScorer()] = self.config.heuristic_weight
        if self.config.discriminator_path is not None:
            from afs.continuous.scoring.discriminator import DiscriminatorScorer

            loaded = DiscriminatorScorer.load(self.config.discriminator_path)
            scorers[loaded] = self.config.discriminator_weight
        self.ensemble = EnsembleScorer(scorers, feedback_weight=self.config.feedback_weight)

    def score(self, query: str, response: str) -> float:
        return self.ensemble.score(query, response)

    def score_sample(self, sample: Any) -> QualityScore:
        query, response = str(sample.query), str(sample.response)
        feedback = getattr(sample, "user_feedback", None)
        return QualityScore(
            overall=self.ensemble.score(query, response, feedback),
            components=self.ensemble.components(query, response, feedback),
        )


__all__ = ["EnsembleScorer", "QualityScore", "QualityScorer", "Scorer", "ScoringConfig"]
