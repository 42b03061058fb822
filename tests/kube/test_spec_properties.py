"""Every spec the CRD schema admits either works or is refused as InvalidSpec: specs are
generated from the generated CRD schemas themselves and run through everything the
controllers compute from a spec, with no I/O.

The strategies come from the schema by :func:`admitted` (hypothesis-jsonschema, made for
this, fails on current hypothesis releases: ``'many' object has no attribute 'more'``)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st
from pydantic import ValidationError

from afs.continuous.core import triggers as core
from afs.continuous.kube import planning
from afs.continuous.kube.api import v1alpha1
from afs.continuous.kube.crds import crd
from afs.continuous.kube.rollout import decision_settings, epoch_windows
from afs.continuous.kube.training.job import training_job
from afs.continuous.store.base import UsageStatistics
from afs.continuous.timeutil import format_timestamp
from tests.kube.test_crds import _openapi_to_jsonschema

NOW = datetime(2026, 12, 1, tzinfo=UTC)
#: pod templates are free-form in the CRD; generate ones of the trainer's shape, mostly
_CONTAINER = {
    "type": "object", "required": ["name", "image"],
    "properties": {"name": {"type": "string", "minLength": 1},
                   "image": {"type": "string", "minLength": 1},
                   "env": {"type": "array", "maxItems": 1}},
}  # fmt: skip
TEMPLATE = {
    "anyOf": [
        {"type": "object", "required": ["spec"], "properties": {"spec": {
            "type": "object", "required": ["containers"],
            "properties": {"containers": {"type": "array", "maxItems": 2, "items": _CONTAINER}},
        }}},
        {"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "containers": {"type": "array", "maxItems": 2,
                           "items": {"anyOf": [{"type": "object"}, {"type": "string"}]}},
        }}}},
    ],
}  # fmt: skip


def admitted(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a structural schema admits: types, bounds, patterns, enums, required and
    optional properties, nullable (as JSON Schema type lists) and anyOf. Bounds are
    reached often: extreme admitted values are what break handlers."""
    if "anyOf" in schema:
        return st.one_of([admitted(option) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([admitted({**schema, "type": k}) for k in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low, high = schema.get("minimum", -(2**63)), schema.get("maximum", 2**63)
        low += 1 if schema.get("exclusiveMinimum") else 0
        high -= 1 if schema.get("exclusiveMaximum") else 0
        return st.one_of(st.sampled_from([low, high]), st.integers(low, high))
    if kind == "number":
        low, high = schema.get("minimum"), schema.get("maximum")
        bounds = st.sampled_from([b for b in (low, high) if b is not None] or [0.0])
        numbers = st.floats(
            low, high, allow_nan=False, allow_infinity=False,
            exclude_min=bool(schema.get("exclusiveMinimum")),
            exclude_max=bool(schema.get("exclusiveMaximum")),
        )  # fmt: skip
        return st.one_of(bounds, numbers).filter(
            lambda v: (
                not (schema.get("exclusiveMinimum") and v == low)
                and not (schema.get("exclusiveMaximum") and v == high)
            )
        )
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(min_size=schema.get("minLength", 0), max_size=20)
    if kind == "array":
        items = admitted(schema.get("items", {}))
        return st.lists(
            items, min_size=schema.get("minItems", 0), max_size=schema.get("maxItems", 4)
        )
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        return st.fixed_dictionaries(
            {k: admitted(v) for k, v in properties.items() if k in required},
            optional={k: admitted(v) for k, v in properties.items() if k not in required},
        )
    return st.none() | st.integers() | st.text(max_size=5)


def _spec_schema(kind: str) -> dict[str, Any]:
    found = next(crd(k) for k in v1alpha1.KINDS if k.kind == kind)
    schema = found["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    schema = _openapi_to_jsonschema(copy.deepcopy(schema))
    if kind == "LearningLoop":
        schema["properties"]["training"]["properties"]["template"] = TEMPLATE
    return dict(schema)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(admitted(_spec_schema("LearningLoop")))
def test_an_admitted_learning_loop_spec_works_or_is_invalid(spec: dict[str, Any]) -> None:
    try:
        parsed = v1alpha1.LearningLoopSpec.model_validate(spec)
    except ValidationError:
        return  # the handler's InvalidSpec condition
    training_job(loop="l", namespace="ml", uid="u", spec=parsed, run=1, since=NOW)
    status = v1alpha1.LearningLoopStatus(last_check_time=format_timestamp(NOW))
    planning.check_due(status, parsed.check_interval, NOW)
    config = parsed.triggers.to_config()
    parsed.dataset.to_config()
    core.windows(config, NOW)
    state = core.TriggerState(
        last_retrain=NOW - timedelta(hours=1), last_attempt=NOW, consecutive_failures=2000,
        schedule_anchor=NOW - timedelta(days=1), baseline_quality=0.8, baseline_samples=50,
    )  # fmt: skip
    seen = core.Observations(
        new_samples=10**9, sample_cap=core.sample_cap(config),
        quality_current=UsageStatistics(), quality_previous=UsageStatistics(),
        errors=UsageStatistics(),
    )  # fmt: skip
    core.decide(config, state, seen, NOW)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(admitted(_spec_schema("ABTest")))
def test_an_admitted_abtest_spec_works_or_is_invalid(spec: dict[str, Any]) -> None:
    try:
        parsed = v1alpha1.ABTestSpec.model_validate(spec)
    except ValidationError:
        return
    decision_settings(parsed)
    for step in parsed.steps:
        if step.pause is not None:
            NOW + planning.parse_duration(step.pause)
    if parsed.analysis_interval is not None:
        NOW + planning.parse_duration(parsed.analysis_interval)
    weights = v1alpha1.ArmWeights(champion=90, challenger=10)
    status = v1alpha1.ABTestStatus(
        epochs=[v1alpha1.EpochStatus(step=0, weights=weights, applied=format_timestamp(NOW),
                                     start=format_timestamp(NOW))]
    )  # fmt: skip
    epoch_windows(status, NOW + timedelta(hours=parsed.decision.max_duration_hours))
