"""The evaluation gate's Job: after a run trains, the evaluator measures the candidate and
the champion on the held-out test split (and the golden set), in a pod like the
trainer's — the same contract (environment in, JSON termination message out) and the
same pod policy.

The Job exports the held-out sets itself (an init container, ``afs-continuous export
--held-out-only``): a record's split follows from its key alone, so they are the same
records the training export held out, plus those logged since — never one a model
trained on. The termination message is ``{"metrics": {...}, "champion": {...}}``.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from afs.continuous.kube.naming import dns_label
from afs.continuous.kube.training.base import (
    TRAINING_SERVICE_ACCOUNT,
    RunContext,
    data_volume,
)
from afs.continuous.kube.training.export import (
    exporter_container,
    exporter_volumes,
    golden_set_path,
    golden_set_volume,
)
from afs.continuous.splits import split_path

EVALUATOR_ENV_MODEL = "AFS_MODEL_URI"
EVALUATOR_ENV_CHAMPION = "AFS_CHAMPION_MODEL_URI"
EVALUATOR_ENV_DATASET = "AFS_EVAL_DATASET_PATH"
EVALUATOR_ENV_GOLDEN = "AFS_GOLDEN_SET_PATH"
#: the most metrics a report may carry, and the longest name
MAX_METRICS = 100


def evaluation_job_name(run_name: str) -> str:
    return dns_label(f"{run_name}-eval")


def evaluation_job(
    run: RunContext, *, candidate_uri: str, champion_uri: str | None
) -> dict[str, Any]:
    """The Job that evaluates run ``run``'s version (its evaluator is the first container
    of ``spec.evaluation.template``)."""
    evaluation = run.spec.evaluation
    assert evaluation is not None
    template = copy.deepcopy(evaluation.template)
    pod_spec = template.setdefault("spec", {})
    evaluator = pod_spec["containers"][0]
    evaluator.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    test_path = str(split_path(PurePosixPath(run.spec.dataset.path), "test"))
    env = [
        {"name": EVALUATOR_ENV_MODEL, "value": candidate_uri},
        {"name": EVALUATOR_ENV_DATASET, "value": test_path},
        {"name": "AFS_RUN_ID", "value": run.name},
    ]
    if champion_uri is not None:
        env.append({"name": EVALUATOR_ENV_CHAMPION, "value": champion_uri})
    golden = golden_set_path(run.spec)
    if golden is not None:
        env.append({"name": EVALUATOR_ENV_GOLDEN, "value": golden})
    evaluator["env"] = [*evaluator.get("env", []), *env]
    scratch = _scratch(run)
    exporter = exporter_container(scratch)
    exporter["command"] = [
        arg for arg in exporter["command"]
        if not arg.startswith(("--dataset-id=", "--model-version="))
    ] + ["--held-out-only", "--no-membership"]  # fmt: skip
    volume, mount = data_volume(scratch)
    golden_volume = golden_set_volume(run.spec)
    evaluator["volumeMounts"] = [
        *evaluator.get("volumeMounts", []), mount, *([golden_volume[1]] if golden_volume else []),
    ]  # fmt: skip
    pod_spec["initContainers"] = [exporter, *pod_spec.get("initContainers", [])]
    pod_spec["volumes"] = [*pod_spec.get("volumes", []), volume, *exporter_volumes(run)]
    pod_spec.setdefault("restartPolicy", "Never")
    pod_spec.setdefault("automountServiceAccountToken", False)
    pod_spec.setdefault("serviceAccountName", TRAINING_SERVICE_ACCOUNT)
    template.setdefault("metadata", {}).setdefault("labels", {}).update(run.labels)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": run.metadata(evaluation_job_name(run.name)),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": evaluation.timeout_seconds,
            "ttlSecondsAfterFinished": run.spec.training.ttl_seconds_after_finished or 86_400,
            "template": template,
        },
    }


def _scratch(run: RunContext) -> RunContext:
    """The run as the evaluator's export sees it: a scratch volume of its own (never the
    training run's claim directory or object storage)."""
    dataset = run.spec.dataset.model_copy(update={"volume_claim": None, "storage_uri": None,
                                                  "credentials_secret_ref": None})  # fmt: skip
    return RunContext(
        loop=run.loop, namespace=run.namespace, uid=run.uid,
        spec=run.spec.model_copy(update={"dataset": dataset}), run=run.run, since=None,
        exporter_image=run.exporter_image,
    )  # fmt: skip


@dataclass(frozen=True)
class EvaluatorReport:
    metrics: dict[str, float]
    champion: dict[str, float] | None


def parse_evaluator_report(message: str | None) -> EvaluatorReport:
    """The evaluator's termination message, checked: it is a pod's, anyone's to write.
    ValueError says what is wrong."""
    if not message:
        raise ValueError("the evaluator wrote no termination message")
    try:
        data = json.loads(message)
    except ValueError:
        raise ValueError("the evaluator's termination message is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ValueError('the evaluator\'s report needs "metrics": {name: number}')
    champion = data.get("champion")
    if champion is not None and not isinstance(champion, dict):
        raise ValueError('the evaluator\'s "champion" must be {name: number} or null')
    return EvaluatorReport(
        _metrics(data["metrics"], "metrics"),
        None if champion is None else _metrics(champion, "champion"),
    )


def _metrics(values: dict[str, Any], where: str) -> dict[str, float]:
    if len(values) > MAX_METRICS:
        raise ValueError(f"{where}: more than {MAX_METRICS} metrics")
    out: dict[str, float] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not 0 < len(name) <= 63:
            raise ValueError(f"{where}: a metric name must have 1 to 63 characters")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}.{name}: must be a number")
        if not math.isfinite(value):
            raise ValueError(f"{where}.{name}: must be finite")
        out[name] = float(value)
    return out
