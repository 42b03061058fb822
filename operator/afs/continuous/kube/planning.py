"""Pure decisions of the LearningLoop controller: when to check, what a finished Job
means, how conditions change. No Kubernetes calls here; the handlers do the I/O."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from afs.continuous.kube.api.v1alpha1 import Condition, ConditionStatus, LearningLoopStatus
from afs.continuous.timeutil import format_timestamp, parse_timestamp

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
RECENT_RUNS = 5


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h, 7d)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def check_due(status: LearningLoopStatus, interval: str, now: datetime) -> bool:
    """A check is due when none was made yet, or the last one is ``interval`` old."""
    if status.last_check_time is None:
        return True
    return now >= parse_timestamp(status.last_check_time) + parse_duration(interval)


@dataclass(frozen=True)
class TrainerReport:
    model_uri: str
    metrics: dict[str, float]


def parse_termination_message(message: str | None) -> TrainerReport:
    """The trainer's report: ``{"modelUri": "...", "metrics": {...}}`` as JSON.

    Raises ValueError saying what is wrong (so the run fails with that message)."""
    if not message or not message.strip():
        raise ValueError("the trainer wrote no termination message")
    try:
        data = json.loads(message.strip().splitlines()[-1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"termination message is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValueError("termination message must be a JSON object")
    uri = data.get("modelUri")
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError("termination message has no modelUri")
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise ValueError("metrics must be an object of numbers")
    # A diverged run reports NaN or Infinity; the API server refuses them in JSON, so
    # the run would fail at the ModelVersion instead of saying why.
    not_finite = sorted(str(k) for k, v in metrics.items() if not math.isfinite(v))
    if not_finite:
        raise ValueError(f"metrics must be finite numbers: {', '.join(not_finite)}")
    return TrainerReport(uri, {str(k): float(v) for k, v in metrics.items()})


def set_condition(
    conditions: list[Condition],
    *,
    type: str,
    status: bool | None,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """Conditions with ``type`` set (``status`` None: Unknown); lastTransitionTime moves
    only when status changes."""
    value = (
        ConditionStatus.UNKNOWN if status is None
        else ConditionStatus.TRUE if status else ConditionStatus.FALSE
    )  # fmt: skip
    previous = next((c for c in conditions if c.type == type), None)
    since = (
        previous.last_transition_time
        if previous is not None and previous.status == value
        else format_timestamp(now)
    )
    updated = Condition(
        type=type,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type] + [updated]


def job_state(job: dict[str, Any] | None) -> Literal["Missing", "Running", "Succeeded", "Failed"]:
    """``Missing``, ``Running``, ``Succeeded`` or ``Failed`` from a Job's status."""
    if job is None:
        return "Missing"
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return "Succeeded" if condition["type"] == "Complete" else "Failed"
    if status.get("succeeded"):
        return "Succeeded"
    return "Running"


def controlled_by(obj: dict[str, Any], uid: str) -> bool:
    """Whether ``obj`` names the owner with ``uid``: an object found under one of our
    deterministic names may still be another's, such as the Job of a deleted
    LearningLoop of the same name that garbage collection has not removed yet."""
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(reference.get("uid") == uid for reference in references)


def trainer_message(pods: list[dict[str, Any]], trainer: str) -> str | None:
    """The trainer container's termination message from the Job's pods (newest first)."""
    for pod in sorted(
        pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp", ""), reverse=True
    ):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if container.get("name") == trainer and terminated.get("message"):
                return str(terminated["message"])
    return None
