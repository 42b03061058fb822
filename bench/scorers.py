"""Scorers on the demo's simulated traffic: how well each ranks good answers above bad
ones, how fast each scores, and how many preference pairs the traffic yields.

The demo's grader scores every answer against the reference (token F1); its verdict
(quality >= 0.7: good) is the ground truth here. Users gave thumbs on about half the
answers. The discriminator trains on the thumbs of 80% of the records (by a hash of the
id) and is judged, beside the heuristic scorer, on the other 20%: ROC AUC against the
grader's verdict (target: the discriminator >= 0.80 and above the heuristic). Then each
scorer's throughput on the same texts (best of ``--rounds``), and the DPO pairs per 1,000
records by source, from the same database.

Usage: python bench/scorers.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger
from afs.continuous.demo import run_demo
from afs.continuous.scoring import EnsembleScorer, HeuristicScorer
from afs.continuous.scoring.discriminator import DiscriminatorScorer

TARGET_AUC = 0.80


def _held_out(record_id: str) -> bool:
    return hashlib.sha256(record_id.encode()).digest()[0] < 256 * 0.2


def _auc(labels: list[int], scores: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _rate(score: Callable[[str, str], float], pairs: list[tuple[str, str]], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for query, response in pairs:
            score(query, response)
        best = min(best, time.perf_counter() - start)
    return len(pairs) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_demo(work, say=lambda line: None)
        with UsageLogger(work / "usage.db") as logger:
            records = [r for r in logger.get_records(limit=None) if r.model != "expert-support"]
            train = [(r.query, r.response, int(r.user_feedback == 1)) for r in records
                     if not _held_out(r.id) and r.user_feedback in (1, -1)]  # fmt: skip
            test = [r for r in records if _held_out(r.id) and r.user_feedback in (1, -1)]
            discriminator = DiscriminatorScorer.train(train)
            assert discriminator.report is not None
            heuristic = HeuristicScorer()
            truth = [int((r.quality_score or 0.0) >= 0.7) for r in test]
            pairs = [(r.query, r.response) for r in test]
            disc_auc = _auc(truth, discriminator.score_many(pairs))
            heur_auc = _auc(truth, [heuristic.score(q, a) for q, a in pairs])
            ok = disc_auc >= TARGET_AUC and disc_auc > heur_auc
            report = discriminator.report
            print(
                f"demo traffic: {len(records)} model answers; discriminator trained on "
                f"{len(train)} thumbs (cross-validated AUC {report.cv_roc_auc:.3f}, "
                f"Brier {report.brier:.3f}, calibration error "
                f"{report.calibration_error:.3f}, {report.seconds:.1f} s)"
            )
            print(
                f"held-out ROC AUC against the grader on {len(test)} answers: discriminator "
                f"{disc_auc:.3f}, heuristic {heur_auc:.3f} (target: discriminator >= "
                f"{TARGET_AUC} and above the heuristic) {'✔' if ok else '✘'}"
            )
            ensemble = EnsembleScorer({discriminator: 1.0, heuristic: 0.5})
            sample = (pairs * (2000 // max(1, len(pairs)) + 1))[:2000]
            for name, scorer in (("heuristic", heuristic.score),
                                 ("discriminator", discriminator.score),
                                 ("ensemble", ensemble.score)):  # fmt: skip
                print(f"  {name:13} {_rate(scorer, sample, args.rounds):9,.0f} records/s "
                      f"(one at a time, best of {args.rounds})")  # fmt: skip
            start = time.perf_counter()
            discriminator.score_many(sample)
            print(f"  discriminator, batched: {len(sample) / (time.perf_counter() - start):,.0f}"
                  " records/s")  # fmt: skip
            total = logger.get_statistics()["total"]
            config = DataGeneratorConfig(format_type="dpo", expert_models=("expert-support",))
            result = TrainingDataGenerator(logger, config).generate(work / "dpo.jsonl")
            sources = result.preference_sources or {}
            per = ", ".join(f"{k} {1000 * v / total:.1f}" for k, v in sources.items())
            print(f"DPO pairs per 1,000 records ({total} records): {per}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
