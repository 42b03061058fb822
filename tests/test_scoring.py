"""The heuristic scorer ranks obviously poor answers below plausible ones."""

from __future__ import annotations

import pytest

from afs.continuous import HeuristicScorer, QualityScorer

QUERY = "How do I start a DMA transfer on the SNES?"
GOOD = (
    "Write the source address, the destination register and the byte count into the DMA "
    "channel registers at $43x0 to $43x6, then start the transfer by setting the channel's bit "
    "in $420B. The CPU pauses while the transfer runs, so do it during vertical blank."
)


@pytest.mark.parametrize(
    "poor",
    [
        "",
        "Yes.",
        "I'm sorry, I cannot help with that request about transfers on the SNES at all.",
        "dma dma dma dma dma dma dma dma dma dma dma dma dma dma dma dma dma dma",
        "Bananas are an excellent source of potassium and fibre for a healthy breakfast.",
    ],
)
def test_poor_answers_score_below_a_good_one(poor: str) -> None:
    scorer = HeuristicScorer()
    assert scorer.score(QUERY, poor) < scorer.score(QUERY, GOOD)


def test_scores_are_in_range_and_it_is_a_quality_scorer() -> None:
    scorer = HeuristicScorer()
    assert isinstance(scorer, QualityScorer)
    assert 0.0 <= scorer.score("", "") <= scorer.score(QUERY, GOOD) <= 1.0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        HeuristicScorer(min_words=10, good_words=5)


def test_the_seed_s_scoring_shape_works() -> None:
    from afs.continuous.formats import Sample
    from afs.continuous.scoring import QualityScorer, ScoringConfig

    scorer = QualityScorer(config=ScoringConfig())
    score = scorer.score_sample(Sample(QUERY, GOOD))
    assert 0.0 < score.overall <= 1.0 and score.components == {"HeuristicScorer": score.overall}
    with_feedback = QualityScorer(config=ScoringConfig(feedback_weight=1.0))
    liked = with_feedback.score_sample(Sample(QUERY, GOOD, user_feedback=1)).overall
    disliked = with_feedback.score_sample(Sample(QUERY, GOOD, user_feedback=-1)).overall
    assert liked > score.overall > disliked
