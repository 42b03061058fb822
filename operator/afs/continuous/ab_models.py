"""The records of a local A/B test: the versions that serve, the traffic split between
them, and one comparison's result. Plain data, kept in the test's state file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from afs.continuous.errors import InvalidFieldError
from afs.continuous.timeutil import format_timestamp, utc_now


class ModelStatus(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"
    RETIRED = "retired"


@dataclass
class ModelVersion:
    """A model that serves traffic under ``name`` (the ``model`` of its usage records)."""

    id: str
    name: str
    path: str
    status: ModelStatus
    traffic_weight: float = 0.0
    created_at: str = field(default_factory=lambda: format_timestamp(utc_now()))
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelVersion:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["status"] = ModelStatus(values["status"])
        return cls(**values)


def check_weight(field_name: str, value: Any) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0.0 <= value <= 1.0  # also rejects NaN
    ):
        raise InvalidFieldError(field_name, value, "must be a number in [0, 1]")
    return float(value)


@dataclass
class TrafficSplit:
    """Shares of traffic; each in [0, 1], summing to 1."""

    champion_weight: float = 0.9
    challenger_weight: float = 0.1

    def __post_init__(self) -> None:
        check_weight("champion_weight", self.champion_weight)
        check_weight("challenger_weight", self.challenger_weight)
        if abs(self.champion_weight + self.challenger_weight - 1.0) > 1e-9:
            raise InvalidFieldError(
                "traffic_split",
                (self.champion_weight, self.challenger_weight),
                "weights must sum to 1",
            )

    @classmethod
    def for_challenger(cls, weight: float) -> TrafficSplit:
        weight = check_weight("traffic_weight", weight)
        return cls(1.0 - weight, weight)


@dataclass
class ABTestResult:
    """One comparison: the numbers, the verdict and why.

    ``action`` says what to do: ``promote``, ``rollback`` (the challenger is proven
    worse), ``halt`` (traffic did not split as planned: the test cannot be trusted),
    ``end`` (max duration reached without a decision) or ``continue``. ``verdict`` and
    ``evidence`` carry the sequential engine's verdict and every number behind it.
    """

    champion_metrics: dict[str, Any]
    challenger_metrics: dict[str, Any]
    improvement: float
    winner: str
    reason: str
    timestamp: str
    action: str = "continue"
    elapsed_hours: float = 0.0
    contributions: dict[str, float] = field(default_factory=dict)
    skipped_metrics: dict[str, str] = field(default_factory=dict)
    verdict: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
