"""How an A/B test moves traffic and decides: the settings an ABTest carries, and those a
LearningLoop starts its ABTests with."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from afs.continuous.kube.api.base import (
    MAX_COUNT,
    Count,
    Duration,
    Fraction,
    Hours,
    KubeModel,
    PositiveHours,
)


class DecisionSpec(KubeModel):
    method: Literal["sequential", "weighted"] = "sequential"
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    min_effect: Annotated[float, Field(ge=0, le=1)] = 0.0
    latency_margin: Annotated[float, Field(ge=0, le=100)] = 0.10
    error_rate_margin: Fraction = 0.01
    negative_feedback_margin: Fraction = 0.05
    error_ratio: Annotated[float, Field(gt=1, le=100)] = 2.0
    """The increase of the error rate the error guardrail is tuned to catch soonest."""
    unit: Literal["request", "key"] = "request"
    """What the traffic split randomised: each request, or each user or session (routing
    sticky by a header or cookie), whose records carry its ``assignment_key``."""
    min_units_per_arm: Annotated[int, Field(ge=2, le=MAX_COUNT)] = 20
    """With ``unit: key``: the least users (keys) per arm before any interval."""
    min_requests_per_arm: Count = 200
    min_feedback_per_arm: Count = 20
    min_duration_hours: Hours = 48
    max_duration_hours: PositiveHours = 168
    unreachable_timeout: Duration | None = None
    """While the usage database cannot be read, a running test holds its step (no step
    is taken without evidence). With this set (e.g. ``30m``), a test whose database stays
    unreachable this long returns the traffic to the champion and ends RolledBack."""


class ABTestSettings(DecisionSpec):
    """The decision settings an ABTest created by the loop starts with, and the
    challenger's first share of traffic."""

    initial_challenger_traffic: Fraction = 0.1


class TargetRef(KubeModel):
    api_version: str
    kind: str
    name: Annotated[str, Field(min_length=1)]


class TrafficSpec(KubeModel):
    provider: Literal["gateway-api", "istio", "smi", "kserve", "knative"]
    target_ref: TargetRef
    route_name: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Istio: the one ``http`` route (by ``name``) whose weights the test moves; by
    default every route that holds both arms."""
    create_revision: bool = False
    """Knative: create the challenger's revision from the Service's template with the
    challenger's ``uri`` (``AFS_MODEL_URI``) when the traffic block does not name it yet."""
    on_drift: Literal["reassert", "pause"] = "reassert"
    """What a test does when someone else changed its weights: write ours back (with a
    ``WeightsDrifted`` Event), or stop in place until the weights are ours again."""
