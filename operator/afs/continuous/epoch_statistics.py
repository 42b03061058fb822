"""Each arm's statistics per epoch of an A/B test, read from the usage store: what the
local loop's ``ABTestManager``, the operator's ABTest controller and ``abtest report``
all judge, so the three see the same numbers."""

from __future__ import annotations

from collections.abc import Sequence

from afs.continuous.core.decision import Epoch, EpochWindow
from afs.continuous.store.base import UsageStore


def measure_epochs(
    store: UsageStore,
    windows: Sequence[EpochWindow],
    *,
    champion: str,
    challenger: str,
    units: bool = False,
) -> list[Epoch]:
    """Each arm's statistics per epoch, from its own records (``model`` = the arm's name):
    the local loop and the operator's ABTest controller judge the same numbers. With
    ``units``, also the statistics over each arm's assignment keys."""
    epochs = []
    for window in windows:
        since, until = window.start, window.end
        epochs.append(
            Epoch(
                hours=window.hours,
                challenger_share=window.challenger_share,
                champion=store.statistics(since=since, until=until, model=champion),
                challenger=store.statistics(since=since, until=until, model=challenger),
                champion_units=(
                    store.unit_statistics(since=since, until=until, model=champion)
                    if units
                    else None
                ),
                challenger_units=(
                    store.unit_statistics(since=since, until=until, model=challenger)
                    if units
                    else None
                ),
            )
        )
    return epochs
