"""The heuristic scorer: no model, four signals, documented weights."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
_REFUSALS = (
    "i'm sorry",
    "i am sorry",
    "i cannot",
    "i can't",
    "i can not",
    "as an ai",
    "i am unable",
    "i'm unable",
    "i don't know",
    "i do not know",
)


class HeuristicScorer:
    """A cheap, transparent baseline: no model, four signals, documented weights.

    - **substance** (0.35): answers under ``min_words`` words score low, rising linearly
      to 1 at ``good_words`` words;
    - **relevance** (0.30): the share of the query's content words (4+ letters) that the
      answer mentions, capped at 1 when half of them appear;
    - **variety** (0.20): distinct words over all words; degenerate repetition scores low;
    - **no refusal** (0.15): 0 if the answer opens with a refusal or "I don't know".

    It ranks obviously poor answers below plausible ones; it does not judge truth. Use a
    trained discriminator for that, through the same protocol.
    """

    def __init__(self, *, min_words: int = 3, good_words: int = 40) -> None:
        if not 0 < min_words < good_words:
            raise ValueError("HeuristicScorer needs 0 < min_words < good_words")
        self.min_words = min_words
        self.good_words = good_words

    def score(self, query: str, response: str) -> float:
        words = _WORD.findall(response.casefold())
        if not words:
            return 0.0
        substance = min(1.0, max(0.0, (len(words) - self.min_words + 1) / self.good_words))
        query_terms = {w for w in _WORD.findall(query.casefold()) if len(w) >= 4}
        if query_terms:
            relevance = min(1.0, 2 * len(query_terms & set(words)) / len(query_terms))
        else:
            relevance = 1.0
        variety = len(set(words)) / len(words) if len(words) > 5 else 1.0
        opening = " ".join(response.casefold().split())[:60]
        no_refusal = 0.0 if any(opening.startswith(r) for r in _REFUSALS) else 1.0
        total = 0.35 * substance + 0.30 * relevance + 0.20 * variety + 0.15 * no_refusal
        return round(min(1.0, max(0.0, total)), 4)
