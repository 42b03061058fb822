"""Quality scoring: one interface (:class:`Scorer`), one module per scorer (heuristic,
discriminator, ensemble), one factory (:func:`scorer_from_spec`).

The discriminator needs the ``scoring`` extra (scikit-learn and skops); the others
nothing more.
"""

from __future__ import annotations

from afs.continuous.scoring.base import Scorer
from afs.continuous.scoring.ensemble import (
    EnsembleScorer,
    QualityScore,
    QualityScorer,
    ScoringConfig,
)
from afs.continuous.scoring.factory import scorer_from_spec, training_examples
from afs.continuous.scoring.heuristic import HeuristicScorer

__all__ = [
    "EnsembleScorer",
    "HeuristicScorer",
    "QualityScore",
    "QualityScorer",
    "Scorer",
    "ScoringConfig",
    "scorer_from_spec",
    "training_examples",
]
