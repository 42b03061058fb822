"""The offline evaluation gate of a LearningLoop (``spec.evaluation``) and its verdict on
a ModelVersion (``status.evaluation``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from afs.continuous.core.evaluation import EvaluationRule, MetricRule
from afs.continuous.kube.api.base import DNS_SUBDOMAIN, KubeModel, check_pod_template

#: how long an evaluation may take, at most (a day unless set)
DEFAULT_EVALUATION_TIMEOUT_SECONDS = 86_400
MetricName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")]


class MetricRuleSpec(KubeModel):
    """One metric's condition (see :class:`afs.continuous.core.evaluation.MetricRule`)."""

    name: MetricName
    higher_is_better: bool = True
    min_delta: float | None = None
    """The candidate must beat the champion by at least this much."""
    max_regression: Annotated[float, Field(ge=0)] | None = None
    """It may be worse than the champion by at most this much."""
    minimum: float | None = None
    """An absolute floor (a ceiling when lower is better)."""


class ConfigMapKeyRef(KubeModel):
    name: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)]


class GoldenSetSpec(KubeModel):
    """A curated regression set (JSON Lines samples in any export format): the exporter
    never writes its items as training data, and the evaluator gets it."""

    config_map_ref: ConfigMapKeyRef


class EvaluationSpec(KubeModel):
    """After training, an evaluator Job measures the candidate and the champion on the
    held-out test split (and the golden set); the ABTest starts only if ``metrics`` and
    ``minGoldenPassRate`` are met, else the version is Rejected and no traffic moves."""

    template: dict[str, Any] = Field(
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """The evaluator's pod template (its first container evaluates; same contract and
    pod policy as the trainer's): it gets AFS_MODEL_URI, AFS_CHAMPION_MODEL_URI,
    AFS_EVAL_DATASET_PATH, AFS_GOLDEN_SET_PATH and writes ``{"metrics": {...},
    "champion": {...}}`` as its termination message."""
    metrics: Annotated[list[MetricRuleSpec], Field(max_length=32)] = Field(default_factory=list)
    min_golden_pass_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    golden_set: GoldenSetSpec | None = None
    timeout_seconds: Annotated[int, Field(gt=0, le=7 * 86_400)] = DEFAULT_EVALUATION_TIMEOUT_SECONDS

    @field_validator("template")
    @classmethod
    def _has_an_evaluator(cls, template: dict[str, Any]) -> dict[str, Any]:
        return check_pod_template(template, "evaluator")

    def rule(self) -> EvaluationRule:
        return EvaluationRule(
            metrics=tuple(
                MetricRule(
                    m.name, higher_is_better=m.higher_is_better, min_delta=m.min_delta,
                    max_regression=m.max_regression, minimum=m.minimum,
                )
                for m in self.metrics
            ),
            min_golden_pass_rate=self.min_golden_pass_rate,
        )  # fmt: skip


class EvaluationStatus(KubeModel):
    """The gate's verdict on a version."""

    phase: Literal["Running", "Passed", "Failed"]
    job: str
    started: str | None = None
    finished: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    champion: dict[str, float] | None = None
    reasons: list[str] = Field(default_factory=list)
