"""A discriminator trained on the users' own verdicts: records with thumbs up are good
answers, thumbs down (and a response someone corrected) bad ones, a correction a good
one. Features are hashed (no vocabulary to keep): word and character n-grams of the
response, words of the query, and query-word × response-word pairs — what lets a linear
model learn whether an answer is about what was asked. The model is a logistic
regression, calibrated (sigmoid, cross-validated), so its score reads as a probability.

Trained models are saved with ``skops`` (never pickle): loading one checks every type in
the file against the few this module writes and refuses anything else.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afs.continuous.errors import ContinuousError

_WORD = re.compile(r"\w+", re.UNICODE)
#: the fewest examples of each label a discriminator is trained on
MIN_PER_LABEL = 20
_FEATURES = 2**20


class DiscriminatorError(ContinuousError, ValueError):
    """A discriminator cannot be trained or loaded as asked."""


def _require() -> tuple[Any, Any]:
    try:
        import sklearn
        import skops.io
    except ImportError as exc:
        raise DiscriminatorError(
            f"the discriminator needs scikit-learn and skops ({exc.name} is not installed): "
            "pip install 'afs-continuous[scoring]'"
        ) from None
    return sklearn, skops.io


def features(text: str) -> list[str]:
    """The hashed features of one ``query\\x1fresponse`` text (see the module docstring)."""
    query, _, response = text.partition("\x1f")
    q_words = [w for w in _WORD.findall(query.casefold()) if len(w) > 2]
    r_words = _WORD.findall(response.casefold())
    out = [f"r:{w}" for w in r_words]
    out += [f"r2:{a} {b}" for a, b in itertools.pairwise(r_words)]
    out += [f"q:{w}" for w in q_words]
    r_set = sorted(set(w for w in r_words if len(w) > 2))[:200]
    out += [f"x:{q}|{r}" for q in sorted(set(q_words))[:50] for r in r_set]
    out += [f"overlap:{min(len(set(q_words) & set(r_words)), 5)}"]
    flat = " ".join(r_words)[:2000]
    out += [f"c:{flat[i : i + 4]}" for i in range(max(0, len(flat) - 3))]
    out.append(f"len:{min(len(r_words) // 5, 20)}")
    return out


def _text(query: str, response: str) -> str:
    return f"{query}\x1f{response}"


def _pipeline() -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline([
        ("features", HashingVectorizer(
            analyzer=features, n_features=_FEATURES, alternate_sign=False, norm="l2")),
        ("model", CalibratedClassifierCV(
            LogisticRegression(C=4.0, max_iter=2000), method="sigmoid", cv=3)),
    ])  # fmt: skip


@dataclass(frozen=True)
class TrainingReport:
    examples: int
    positives: int
    negatives: int
    cv_roc_auc: float
    brier: float
    calibration_error: float
    """Expected calibration error over ten bins of the cross-validated probabilities."""
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def _calibration_error(labels: Sequence[int], probabilities: Sequence[float]) -> float:
    bins: list[list[tuple[int, float]]] = [[] for _ in range(10)]
    for label, p in zip(labels, probabilities, strict=True):
        bins[min(int(p * 10), 9)].append((label, p))
    total = len(labels)
    return sum(
        len(b) / total * abs(sum(lab for lab, _ in b) / len(b) - sum(p for _, p in b) / len(b))
        for b in bins if b
    )  # fmt: skip


class DiscriminatorScorer:
    """``score(query, response)``: the probability a user would call the answer good."""

    def __init__(self, pipeline: Any, report: TrainingReport | None = None) -> None:
        self.pipeline = pipeline
        self.report = report

    @classmethod
    def train(
        cls, examples: Iterable[tuple[str, str, int]], *, folds: int = 5
    ) -> DiscriminatorScorer:
        """Fit on ``(query, response, label)`` (1 good, 0 bad); the report's ROC AUC and
        calibration are cross-validated (``folds``), the model then fit on everything."""
        _require()
        from sklearn.metrics import brier_score_loss, roc_auc_score
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        texts, labels = [], []
        for query, response, label in examples:
            texts.append(_text(query, response))
            labels.append(int(label))
        positives = sum(labels)
        negatives = len(labels) - positives
        if min(positives, negatives) < MIN_PER_LABEL:
            raise DiscriminatorError(
                f"a discriminator needs at least {MIN_PER_LABEL} good and {MIN_PER_LABEL} bad "
                f"answers with feedback; there are {positives} good and {negatives} bad"
            )
        start = time.perf_counter()
        split = StratifiedKFold(n_splits=min(folds, positives, negatives), shuffle=True,
                                random_state=0)  # fmt: skip
        probabilities = cross_val_predict(
            _pipeline(), texts, labels, cv=split, method="predict_proba"
        )[:, 1]
        pipeline = _pipeline().fit(texts, labels)
        report = TrainingReport(
            examples=len(labels), positives=positives, negatives=negatives,
            cv_roc_auc=round(float(roc_auc_score(labels, probabilities)), 4),
            brier=round(float(brier_score_loss(labels, probabilities)), 4),
            calibration_error=round(_calibration_error(labels, list(probabilities)), 4),
            seconds=round(time.perf_counter() - start, 4),
        )  # fmt: skip
        return cls(pipeline, report)

    def score(self, query: str, response: str) -> float:
        return round(float(self.pipeline.predict_proba([_text(query, response)])[0, 1]), 4)

    def score_many(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        probabilities = self.pipeline.predict_proba([_text(q, r) for q, r in pairs])[:, 1]
        return [round(float(p), 4) for p in probabilities]

    def save(self, path: str | Path) -> None:
        """The model as a skops file, and its training report beside it (``.json``)."""
        _, sio = _require()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        sio.dump(self.pipeline, target)
        if self.report is not None:
            target.with_suffix(".json").write_text(json.dumps(self.report.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> DiscriminatorScorer:
        _, sio = _require()
        source = Path(path)
        if not source.is_file():
            raise DiscriminatorError(f"no discriminator at {source} (train one first)")
        try:
            untrusted = sio.get_untrusted_types(file=source)
        except Exception as exc:  # not a skops file
            raise DiscriminatorError(f"{source} is not a skops model: {exc}") from None
        unexpected = sorted(set(untrusted) - _TRUSTED)
        if unexpected:
            raise DiscriminatorError(
                f"{source} holds types this discriminator never writes ({', '.join(unexpected)});"
                " refusing to load it"
            )
        pipeline = sio.load(source, trusted=sorted(untrusted))
        steps = getattr(pipeline, "named_steps", {})
        if list(steps) != ["features", "model"] or not hasattr(pipeline, "predict_proba"):
            raise DiscriminatorError(
                f"{source} holds a {type(pipeline).__name__}, not a discriminator"
            )
        report_path = source.with_suffix(".json")
        report = None
        if report_path.is_file():
            report = TrainingReport(**json.loads(report_path.read_text()))
        return cls(pipeline, report)


#: what a saved discriminator may hold beyond skops' defaults
_TRUSTED = {
    f"{__name__}.features",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
}
