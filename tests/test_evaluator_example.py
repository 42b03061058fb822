"""The example evaluator (examples/trainer/evaluate.py) runs as the evaluation Job runs
it: on the held-out split an export wrote, for a model the example trainer trained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from afs.continuous import DataGeneratorConfig, TrainingDataGenerator, UsageLogger
from afs.continuous.core.evaluation import EvaluationRule, MetricRule, judge_evaluation
from afs.continuous.demo import KNOWLEDGE, TRAIN_TEMPLATES
from afs.continuous.formats import Sample, format_sample
from tests.docs_examples import ROOT

TRAINER = ROOT / "examples" / "trainer"


def _run(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AFS_")}
    return subprocess.run(
        [sys.executable, str(TRAINER / script)], cwd=cwd, env={**clean, **env},
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def _train(data: Path, out: Path, run: str) -> str:
    report = out / f"{run}.json"
    env = {"AFS_DATASET_PATH": str(data), "AFS_OUTPUT_DIR": str(out / run), "AFS_RUN_ID": run,
           "AFS_TERMINATION_LOG": str(report)}  # fmt: skip
    done = _run("train.py", env, out)
    assert done.returncode == 0, done.stderr
    return str(json.loads(report.read_text())["modelUri"])


def test_the_evaluator_measures_candidate_and_champion_on_the_held_out_sets(
    tmp_path: Path,
) -> None:
    with UsageLogger(tmp_path / "u.db") as logger:
        logger.log_many([
            {"query": template.format(t=topic), "response": answer, "model": "m",
             "quality_score": 0.9, "user_feedback": 1, "assignment_key": f"user-{i}-{j}"}
            for i, (topic, answer) in enumerate(KNOWLEDGE)
            for j, template in enumerate(TRAIN_TEMPLATES)
        ])  # fmt: skip
        config = DataGeneratorConfig(split=(0.7, 0.1, 0.2))
        TrainingDataGenerator(logger, config).generate(tmp_path / "dataset.jsonl")
    golden = tmp_path / "golden.jsonl"
    known = KNOWLEDGE[:5]
    lines = [format_sample("chatml", Sample(TRAIN_TEMPLATES[0].format(t=t), a)) for t, a in known]
    golden.write_text("".join(json.dumps(line) + "\n" for line in lines))
    champion = _train(golden, tmp_path, "nayru-run-1")  # knows five topics
    candidate = _train(tmp_path / "dataset.jsonl", tmp_path, "nayru-run-2")
    report_path = tmp_path / "evaluation.json"
    done = _run("evaluate.py", {
        "AFS_MODEL_URI": candidate, "AFS_CHAMPION_MODEL_URI": champion,
        "AFS_EVAL_DATASET_PATH": str(tmp_path / "dataset.test.jsonl"),
        "AFS_GOLDEN_SET_PATH": str(golden), "AFS_TERMINATION_LOG": str(report_path),
    }, tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(report_path.read_text())
    assert report["metrics"]["accuracy"] > report["champion"]["accuracy"] + 0.5
    assert report["metrics"]["golden_pass_rate"] == 1.0
    rule = EvaluationRule((MetricRule("accuracy", max_regression=0.0),), min_golden_pass_rate=1.0)
    assert judge_evaluation(rule, report["metrics"], report["champion"]).passed


def test_the_evaluator_refuses_to_run_without_the_contract(tmp_path: Path) -> None:
    done = _run("evaluate.py", {}, tmp_path)
    assert done.returncode != 0 and "AFS_MODEL_URI is not set" in done.stderr
    done = _run("evaluate.py", {"AFS_MODEL_URI": "s3://models/x", "AFS_EVAL_DATASET_PATH": "t"},
                tmp_path)  # fmt: skip
    assert done.returncode != 0 and "only file:// models" in done.stderr
