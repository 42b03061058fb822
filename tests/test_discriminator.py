"""The discriminator trained on the users' verdicts: trained from a store's thumbs and
corrections, saved with skops and loaded back (refusing what it never writes), used
through ``afs-continuous score`` and by the logger as records arrive."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from afs.continuous import UsageLogger
from afs.continuous.cli import main
from afs.continuous.scoring import EnsembleScorer, HeuristicScorer, training_examples
from afs.continuous.scoring.discriminator import DiscriminatorError, DiscriminatorScorer

TOPICS = {
    "hdma": "HDMA writes PPU registers once per scanline from a table.",
    "xba": "XBA swaps the high and low bytes of the accumulator.",
    "mode 7": "Mode 7 rotates and scales one background layer.",
    "wai": "WAI halts the CPU until the next interrupt arrives.",
    "rep": "REP clears the processor status bits given by its operand.",
    "dma": "DMA copies memory to the PPU without the CPU's help.",
}


def _log_verdicts(db: Path, *, per_topic: int = 12) -> None:
    """Right answers liked, wrong-topic answers and refusals disliked; one corrected."""
    rng = random.Random(3)
    names = sorted(TOPICS)
    records = []
    for topic in names:
        for i in range(per_topic):
            query = (
                rng.choice(["What is {t}?", "Explain {t}.", "How does {t} work?"]).format(t=topic)
                + f" ({i})"
            )
            records.append({"query": query, "response": TOPICS[topic], "model": "m",
                            "user_feedback": 1})  # fmt: skip
            wrong = TOPICS[rng.choice([n for n in names if n != topic])]
            bad = rng.choice([wrong, "I'm not sure about that one."])
            records.append({"query": query, "response": bad, "model": "m", "user_feedback": -1})
    with UsageLogger(db) as logger:
        ids = logger.log_many(records)
        logger.record_feedback(ids[1], -1, correction=TOPICS[names[0]])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DiscriminatorScorer]:
    db = tmp_path_factory.mktemp("disc") / "u.db"
    _log_verdicts(db)
    with UsageLogger(db) as logger:
        scorer = DiscriminatorScorer.train(training_examples(logger.store), folds=3)
    return db, scorer


def test_it_learns_whether_an_answer_is_about_what_was_asked(
    trained: tuple[Path, DiscriminatorScorer],
) -> None:
    _, scorer = trained
    assert scorer.report is not None and scorer.report.cv_roc_auc > 0.8
    assert scorer.report.positives == 73  # 72 liked answers and one correction
    right = scorer.score("What does XBA do?", TOPICS["xba"])
    wrong = scorer.score("What does XBA do?", TOPICS["mode 7"])
    unsure = scorer.score("What does XBA do?", "I'm not sure about that one.")
    assert right > max(wrong, unsure)


def test_it_is_saved_with_skops_and_loaded_back(
    trained: tuple[Path, DiscriminatorScorer], tmp_path: Path
) -> None:
    _, scorer = trained
    scorer.save(tmp_path / "disc.skops")
    loaded = DiscriminatorScorer.load(tmp_path / "disc.skops")
    assert loaded.score("What is HDMA?", TOPICS["hdma"]) == scorer.score(
        "What is HDMA?", TOPICS["hdma"]
    )
    assert loaded.report == scorer.report
    assert b"pickle" not in (tmp_path / "disc.skops").read_bytes()[:4]


def test_a_file_with_other_types_is_refused(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.neighbors import KNeighborsClassifier

    sio.dump(KNeighborsClassifier(), tmp_path / "other.skops")
    with pytest.raises(DiscriminatorError, match="holds a KNeighborsClassifier, not a disc"):
        DiscriminatorScorer.load(tmp_path / "other.skops")
    (tmp_path / "junk.skops").write_bytes(b"not a model")
    with pytest.raises(DiscriminatorError, match="not a skops model"):
        DiscriminatorScorer.load(tmp_path / "junk.skops")


def test_too_few_verdicts_are_refused() -> None:
    examples = [("q", "good", 1)] * 25 + [("q", "bad", 0)] * 5
    with pytest.raises(DiscriminatorError, match="at least 20 good and 20 bad"):
        DiscriminatorScorer.train(examples)


def test_score_trains_then_scores_with_the_discriminator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "u.db"
    _log_verdicts(db, per_topic=8)
    with UsageLogger(db) as logger:
        unscored = [logger.log("What does WAI do?", TOPICS["wai"], "m"),
                    logger.log("What does WAI do?", TOPICS["dma"], "m")]  # fmt: skip
    model = tmp_path / "disc.skops"
    assert main(["--db", str(db), "--json", "score", "--train-discriminator", str(model)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 97 and report["cv_roc_auc"] > 0.7
    assert main(["--db", str(db), "score", "--scorer", f"discriminator:{model}"]) == 0
    with UsageLogger(db) as logger:
        right, wrong = (logger.store.get(i) for i in unscored)
    assert right is not None and wrong is not None
    assert right.quality_score is not None and wrong.quality_score is not None
    assert right.quality_score > wrong.quality_score


def test_a_bad_scorer_spec_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "u.db"
    UsageLogger(db).close()
    assert main(["--db", str(db), "score", "--scorer", "oracle"]) == 2
    assert "expected one of heuristic, discriminator:MODEL" in capsys.readouterr().err
    assert main(["--db", str(db), "score", "--scorer", "discriminator:missing.skops"]) == 2
    assert "no discriminator at missing.skops" in capsys.readouterr().err


def test_the_logger_scores_with_an_ensemble_as_records_arrive(
    trained: tuple[Path, DiscriminatorScorer], tmp_path: Path
) -> None:
    _, scorer = trained
    ensemble = EnsembleScorer({scorer: 2.0, HeuristicScorer(): 1.0})
    with UsageLogger(tmp_path / "u.db", scorer=ensemble) as logger:
        record_id = logger.log("What does DMA do?", TOPICS["dma"], "m")
        record = logger.store.get(record_id)
    expected = (2 * scorer.score("What does DMA do?", TOPICS["dma"])
                + HeuristicScorer().score("What does DMA do?", TOPICS["dma"])) / 3  # fmt: skip
    assert record is not None and record.quality_score == pytest.approx(expected, abs=1e-3)


def test_an_ensemble_refuses_what_is_no_scorer() -> None:
    with pytest.raises(ValueError, match="no score"):
        EnsembleScorer({object(): 1.0})
    with pytest.raises(ValueError, match="must be positive"):
        EnsembleScorer({HeuristicScorer(): 0.0})


def test_export_scores_first_with_a_discriminator_trained_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "u.db"
    _log_verdicts(db, per_topic=8)
    with UsageLogger(db) as logger:
        logger.log("What does WAI do?", TOPICS["wai"], "m", user_feedback=1)  # unscored
    out = tmp_path / "train.jsonl"
    argv = ["--db", str(db), "--json", "export", str(out), "--score", "discriminator",
            "--min-quality", "0.5"]  # fmt: skip
    assert main(argv) == 0
    scoring = json.loads(capsys.readouterr().out)["scoring"]
    assert scoring["scorer"] == "discriminator" and scoring["scored"] == 97
    assert scoring["discriminator"]["examples"] == 98


def test_export_falls_back_to_the_heuristic_with_too_few_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "u.db"
    with UsageLogger(db) as logger:
        logger.log("What does WAI do?", TOPICS["wai"], "m", user_feedback=1)
    argv = ["--db", str(db), "--json", "export", str(tmp_path / "t.jsonl"), "--score",
            "discriminator"]  # fmt: skip
    assert main(argv) == 0
    scoring = json.loads(capsys.readouterr().out)["scoring"]
    assert scoring["scorer"] == "heuristic" and "at least 20 good" in scoring["fallback"]
