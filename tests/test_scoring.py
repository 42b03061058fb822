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
