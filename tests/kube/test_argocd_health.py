"""The Argo CD health checks, run as Argo CD runs them (Lua 5.1, the script's ``obj`` a
table of the resource) from the ConfigMap patch we ship, against status fixtures."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from lupa import lua51

from afs.continuous.kube.api.v1alpha1 import GROUP
from tests.docs_examples import ROOT

PATCH = yaml.safe_load((ROOT / "manifests" / "argocd" / "argocd-cm.yaml").read_text())["data"]
AT = "2026-11-20T12:00:00Z"


def _health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    script = PATCH[f"resource.customizations.health.{GROUP}_{kind}"]
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return str(result["status"]), str(result["message"])


def _ready(status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": AT}  # fmt: skip


def _obj(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "nayru", "generation": generation}}
    if status is not None:
        obj["status"] = {"observedGeneration": 1, **status}
    return obj


def test_every_kind_has_a_check() -> None:
    assert set(PATCH) == {
        f"resource.customizations.health.{GROUP}_{kind}"
        for kind in ("LearningLoop", "ABTest", "ModelVersion")
    }


@pytest.mark.parametrize(
    ("status", "generation", "health", "says"),
    [
        (None, 1, "Progressing", "Waiting for the operator"),
        ({"phase": "Watching"}, 2, "Progressing", "generation 2"),
        ({"phase": "Pending"}, 1, "Progressing", "Pending"),
        ({"phase": "Watching", "conditions": [_ready("True", "Checked", "no trigger")]}, 1,
         "Healthy", "Watching (Checked: no trigger)"),
        ({"phase": "Training"}, 1, "Healthy", "Training"),
        ({"phase": "Testing", "conditions": [_ready("True", "Testing")]}, 1, "Healthy", "Testing"),
        ({"phase": "Suspended"}, 1, "Suspended", "spec.suspend"),
        ({"phase": "Failed", "conditions": [_ready("False", "InvalidSpec", "bad model")]}, 1,
         "Degraded", "InvalidSpec: bad model"),
        ({"phase": "Watching", "conditions": [_ready("False", "DatabaseUnavailable", "down")]},
         1, "Degraded", "DatabaseUnavailable: down"),
    ],
)  # fmt: skip
def test_learning_loop_health(
    status: dict[str, Any] | None, generation: int, health: str, says: str
) -> None:
    found, message = _health("LearningLoop", _obj(status, generation))
    assert found == health and says in message


@pytest.mark.parametrize(
    ("status", "health", "says"),
    [
        (None, "Progressing", "Waiting for the operator"),
        ({"phase": "Pending"}, "Progressing", "Pending"),
        ({"phase": "Running", "weights": {"champion": 90, "challenger": 10}}, "Progressing",
         "challenger at 10%"),
        ({"phase": "Running", "conditions": [_ready("False", "NotAvailable", "rolling out")]},
         "Progressing", "NotAvailable: rolling out"),
        ({"phase": "WaitingPromotion", "reason": "better"}, "Suspended", "Waiting for approval"),
        ({"phase": "Promoted", "reason": "quality +0.2"}, "Healthy", "Promoted: quality +0.2"),
        ({"phase": "RolledBack", "reason": "worse"}, "Degraded", "RolledBack: worse"),
        ({"phase": "Halted", "reason": "error rate"}, "Degraded", "Halted: error rate"),
        ({"phase": "Inconclusive", "reason": "no evidence"}, "Degraded", "Inconclusive"),
        ({"phase": "Running", "conditions": [_ready("False", "TargetNotFound", "no route")]},
         "Degraded", "TargetNotFound: no route"),
    ],
)  # fmt: skip
def test_abtest_health(status: dict[str, Any] | None, health: str, says: str) -> None:
    found, message = _health("ABTest", _obj(status))
    assert found == health and says in message


def _available(status: str, reason: str) -> dict[str, Any]:
    return {"type": "Available", "status": status, "reason": reason, "message": "Deployment x",
            "lastTransitionTime": AT}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "health", "says"),
    [
        (None, "Progressing", "Waiting for the operator"),
        ({"stage": "Candidate"}, "Healthy", "Candidate"),
        ({"stage": "Champion"}, "Healthy", "Champion"),
        ({"stage": "Rejected", "conditions": [_available("False", "Progressing")]}, "Healthy",
         "Rejected"),
        ({"stage": "Retired"}, "Healthy", "Retired"),
        ({"stage": "Challenger", "conditions": [_available("True", "Available")]}, "Healthy",
         "Challenger, Available"),
        ({"stage": "Challenger", "conditions": [_available("False", "Progressing")]},
         "Progressing", "Progressing: Deployment x"),
        ({"stage": "Candidate", "conditions": [_available("False", "NameTaken")]}, "Degraded",
         "NameTaken"),
        ({"stage": "Candidate", "conditions": [_available("False", "InvalidName")]}, "Degraded",
         "InvalidName"),
    ],
)  # fmt: skip
def test_model_version_health(status: dict[str, Any] | None, health: str, says: str) -> None:
    found, message = _health("ModelVersion", _obj(status))
    assert found == health and says in message
