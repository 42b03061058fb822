"""An evaluator that follows the evaluation gate's contract, for the example trainer's
models (the demo's small retrieval model).

The evaluation Job runs it as its first container, after its init container exported the
held-out sets. It reads what the contract gives — ``AFS_MODEL_URI`` (the candidate),
``AFS_CHAMPION_MODEL_URI`` (the champion, when there is one), ``AFS_EVAL_DATASET_PATH``
(the held-out test split) and ``AFS_GOLDEN_SET_PATH`` (the golden set, when the loop
names one) — measures both models the same way (accuracy: the share of questions
answered with the reference answer) and reports ``{"metrics": {...}, "champion":
{...}}`` as its termination message. The operator judges the report against
``spec.evaluation``. Any failure exits non-zero with the reason on stderr.

Runs the same as a plain command, outside a cluster:

    AFS_MODEL_URI=file:///models/nayru-run-2/model.json \\
    AFS_CHAMPION_MODEL_URI=file:///models/nayru-run-1/model.json \\
    AFS_EVAL_DATASET_PATH=dataset.test.jsonl AFS_GOLDEN_SET_PATH=golden.jsonl \\
    AFS_TERMINATION_LOG=evaluation.json python examples/trainer/evaluate.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from afs.continuous.core.evaluation import GOLDEN_PASS_RATE
from afs.continuous.demo import RetrievalModel, accuracy_on


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f"evaluate.py: {name} is not set (the evaluation Job sets it)")
    return value


def _model(uri: str) -> RetrievalModel:
    """A model the example trainer kept: a ``file://`` URI or a path (another scheme
    would be fetched first; this example reads a mounted volume)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise SystemExit(f"evaluate.py: {uri}: only file:// models are read by this example")
    path = Path(unquote(parsed.path) if parsed.scheme else uri)
    if not path.is_file():
        raise SystemExit(f"evaluate.py: no model at {path}")
    return RetrievalModel.load(path)


def _metrics(model: RetrievalModel, test: str, golden: str | None) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    accuracy = accuracy_on(model, test)
    if accuracy is not None:
        metrics["accuracy"] = accuracy
    passed = accuracy_on(model, golden)
    if passed is not None:
        metrics[GOLDEN_PASS_RATE] = passed
    return metrics


def main() -> int:
    candidate = _model(_required("AFS_MODEL_URI"))
    test = _required("AFS_EVAL_DATASET_PATH")
    golden = os.environ.get("AFS_GOLDEN_SET_PATH") or None
    champion_uri = os.environ.get("AFS_CHAMPION_MODEL_URI") or None
    report_path = Path(os.environ.get("AFS_TERMINATION_LOG") or "/dev/termination-log")
    if not Path(test).is_file():
        print(f"evaluate.py: no held-out set at {test}", file=sys.stderr)
        return 1
    report: dict[str, Any] = {"metrics": _metrics(candidate, test, golden), "champion": None}
    if champion_uri is not None:
        report["champion"] = _metrics(_model(champion_uri), test, golden)
    report_path.write_text(json.dumps(report))
    print(f"evaluate.py: {json.dumps(report)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
