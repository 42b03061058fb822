"""The scorer interface.

A scorer is anything with ``score(query, response) -> float`` in [0, 1]. Pass one to
``UsageLogger(scorer=...)`` to score records as they are logged, or call
``UsageLogger.score_unscored()`` (``afs-continuous score``) to backfill. Records nobody
scored stay unscored (NULL): they are left out of quality averages and never pass a
quality threshold, because "no score" is not evidence of a bad (or good) answer.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Scorer(Protocol):
    def score(self, query: str, response: str) -> float:
        """A quality estimate in [0, 1] for ``response`` as an answer to ``query``."""
        ...
