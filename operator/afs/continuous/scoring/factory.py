"""Scorers by name (``heuristic``, ``discriminator:PATH``), and the examples a
discriminator learns from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from afs.continuous.conversations import text_of
from afs.continuous.errors import strip_credentials
from afs.continuous.scoring.base import Scorer
from afs.continuous.scoring.heuristic import HeuristicScorer
from afs.continuous.store import RecordQuery, UsageStore

SPECS = "heuristic, discriminator:MODEL, judge:URL?model=NAME, ensemble:SPEC*W+SPEC*W"
#: the environment variable a judge's API key is read from (never a command line)
JUDGE_KEY_ENV = "AFS_JUDGE_API_KEY"


def scorer_from_spec(spec: str) -> Scorer:
    """``heuristic``, ``discriminator:PATH`` (a model ``score --train-discriminator``
    saved) or ``judge:URL?model=NAME[&concurrency=N][&timeout=S]`` (an OpenAI-compatible
    endpoint, its key in ``AFS_JUDGE_API_KEY``); ValueError naming what is wrong."""
    kind, _, argument = spec.partition(":")
    if kind == "heuristic" and not argument:
        return HeuristicScorer()
    if kind == "discriminator" and argument:
        from afs.continuous.scoring.discriminator import DiscriminatorScorer

        return DiscriminatorScorer.load(argument)
    if kind == "judge" and argument:
        return _judge(argument)
    if kind == "ensemble" and argument:
        return _ensemble(argument)
    raise ValueError(f"--scorer {strip_credentials(spec)!r}: expected one of {SPECS}")


def _ensemble(argument: str) -> Scorer:
    """``discriminator:disc.skops*2+heuristic*1``: scorers and their weights."""
    from afs.continuous.scoring.ensemble import EnsembleScorer

    scorers: dict[Any, float] = {}
    for part in argument.split("+"):
        spec, star, weight = part.rpartition("*")
        if not star or not spec:
            raise ValueError(f"ensemble: {part!r} needs a weight (SPEC*WEIGHT)")
        if spec.startswith("ensemble:"):
            raise ValueError("ensemble: an ensemble cannot hold an ensemble")
        try:
            value = float(weight)
        except ValueError:
            raise ValueError(f"ensemble: {weight!r} is not a weight") from None
        scorers[scorer_from_spec(spec)] = value
    return EnsembleScorer(scorers)


def _judge(argument: str) -> Scorer:
    from afs.continuous.scoring.judge import JudgeScorer

    url = urlsplit(argument)
    options = dict(parse_qsl(url.query))
    unknown = sorted(set(options) - {"model", "concurrency", "timeout"})
    if unknown or "model" not in options:
        raise ValueError(
            f"judge:{strip_credentials(argument)}: name the model (?model=NAME); known "
            f"options: model, concurrency, timeout"
            + (f"; unknown: {unknown[0]}" if unknown else "")
        )
    try:
        concurrency = int(options.get("concurrency", "4"))
        timeout = float(options.get("timeout", "30"))
    except ValueError:
        raise ValueError("judge: concurrency must be a whole number, timeout seconds") from None
    return JudgeScorer(
        urlunsplit((url.scheme, url.netloc, url.path, "", "")), model=options["model"],
        api_key=os.environ.get(JUDGE_KEY_ENV) or None, concurrency=concurrency,
        timeout_s=timeout,
    )  # fmt: skip


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
