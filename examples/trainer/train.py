"""A trainer that follows the trainer contract, built on the demo's small retrieval model.

The training Job runs it as its first container. It reads what the contract gives
(``AFS_DATASET_PATH``, ``AFS_OUTPUT_DIR``, ``AFS_RUN_ID``), trains, keeps the model where
``AFS_MODEL_STORE`` says (a mounted volume; by default the output directory), and
reports ``{"modelUri": ..., "metrics": {...}}`` as its termination message, which the
operator turns into a ModelVersion. Any failure exits non-zero with the reason on
stderr, which the operator shows in the run's status.

Runs the same as a plain command, outside a cluster:

    AFS_DATASET_PATH=train.jsonl AFS_OUTPUT_DIR=out AFS_RUN_ID=nayru-run-1 \\
    AFS_TERMINATION_LOG=report.json python examples/trainer/train.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from afs.continuous.demo import RetrievalModel, held_out_accuracy


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f"train.py: {name} is not set (the training Job sets it)")
    return value


def main() -> int:
    dataset = Path(_required("AFS_DATASET_PATH"))
    output = Path(_required("AFS_OUTPUT_DIR"))
    run = _required("AFS_RUN_ID")
    store = Path(os.environ.get("AFS_MODEL_STORE") or output)
    report = Path(os.environ.get("AFS_TERMINATION_LOG") or "/dev/termination-log")
    if not dataset.is_file():
        print(f"train.py: no data set at {dataset}", file=sys.stderr)
        return 1
    model = RetrievalModel.train(dataset)
    if not model.pairs:
        print(f"train.py: {dataset} holds no training sample", file=sys.stderr)
        return 1
    output.mkdir(parents=True, exist_ok=True)
    trained = output / "model.json"
    model.save(trained)
    kept = store / run / "model.json"
    kept.parent.mkdir(parents=True, exist_ok=True)
    if kept.resolve() != trained.resolve():
        shutil.copyfile(trained, kept)
    metrics = {"train_examples": len(model.pairs), "heldout_accuracy": held_out_accuracy(model)}
    report.write_text(json.dumps({"modelUri": kept.resolve().as_uri(), "metrics": metrics}))
    print(f"train.py: {run}: {len(model.pairs)} examples, model at {kept}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
