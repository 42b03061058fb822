"""Configuration models and config-file loading.

The seed's configuration objects are pydantic dataclasses: constructed positionally or by
keyword exactly like the original's dataclasses, but every value is checked (strictly:
``"0.7"`` is not a number, ``1`` is not ``True``) and unknown keys are errors that name the
key. Nested sections (``trigger_config`` …) accept a mapping or the object itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import ConfigDict, Field, Strict, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from afs.continuous.core.decision import DecisionSettings
from afs.continuous.errors import ContinuousError, redact_secrets
from afs.continuous.privacy.settings import RedactionConfig
from afs.continuous.splits import check_split

STRICT = ConfigDict(extra="forbid", validate_assignment=True)

FormatType = Literal["chatml", "alpaca", "completion", "openai", "dpo", "kto"]
#: formats made of what users said of answers, not of the answers alone
PREFERENCE_FORMATS = ("dpo", "kto")
Fraction = Annotated[float, Strict(), Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Flag = Annotated[bool, Strict()]
#: ten years: past that, a span of hours is a typo (and overflows the calendar)
MAX_HOURS = 87_600.0
Hours = Annotated[float, Strict(), Field(ge=0.0, le=MAX_HOURS, allow_inf_nan=False)]
PositiveHours = Annotated[float, Strict(), Field(gt=0, le=MAX_HOURS, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Strict(), Field(gt=0, le=MAX_HOURS * 3600, allow_inf_nan=False)]
Count = Annotated[int, Strict(), Field(ge=0)]


@dataclass(config=STRICT)
class DataGeneratorConfig:
    """Which usage records become training samples, and how they are written.

    ``min_user_feedback``: ``1`` keeps thumbs-up only, ``0`` also neutral, ``-1`` any
    record with feedback, ``None`` disables the feedback filter. ``min_quality_score``
    of 0 disables the quality filter (unscored records pass); above 0, only scored
    records at or above it pass. ``max_samples`` caps the samples taken from usage (the
    best by quality, newest first on ties); rehearsal samples come on top of it.
    ``model``/``expert`` (not in the original) take only that model's (expert's) records.
    """

    min_quality_score: Fraction = 0.7
    min_user_feedback: Annotated[int, Strict(), Field(ge=-1, le=1)] | None = 1
    deduplicate: Flag = True
    include_existing_data: Flag = True
    existing_data_path: str | Path | None = None
    max_samples: Count | None = None
    format_type: FormatType = "chatml"
    model: str | None = None
    expert: str | None = None
    train_on: Literal["last", "all"] = "last"
    """A conversation's training target in ``chatml`` and ``openai``: only the logged
    response (earlier assistant turns carry ``"weight": 0``), or every assistant turn."""
    redaction: RedactionConfig | None = None
    """Personal data and secrets redacted in every sample written (``RedactionConfig()``
    for the defaults; needs the ``privacy`` extra). None: written as logged."""
    split: tuple[Fraction, Fraction, Fraction] | None = None
    """``(train, validation, test)`` fractions: the held-out sets are written beside the
    output (``<name>.validation.jsonl``, ``<name>.test.jsonl``), each record placed by a
    stable hash of its assignment key (else its conversation's opening, else its content), so a
    test record stays in test as data grows. None: everything is training data."""
    golden_path: str | Path | None = None
    """A golden set (JSON Lines samples in any format): never exported as training data;
    a training item equal to one of its items is left out and counted."""
    expert_models: tuple[str, ...] = ()
    """``dpo``: the ``model`` names of expert sources (e.g. a human support desk logged as
    ``expert-support``) whose answers are chosen against a failed model answer."""
    preference_margin: Fraction = 0.3
    """``dpo``: how far apart two answers' quality scores must be to pair them."""
    max_pairs_per_prompt: Annotated[int, Strict(), Field(ge=1, le=1000)] = 4
    include_provenance: Flag = False
    """``dpo``/``kto``: each line's ``metadata`` names its source and record ids."""
    record_membership: Flag = True
    """Record which records the export took (8 bytes each), so ``afs-continuous forget``
    and ``lineage`` can name the data sets and versions a record went into."""

    @field_validator("split")
    @classmethod
    def _split_sums_to_one(
        cls, value: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        return None if value is None else check_split(value)


@dataclass(config=STRICT)
class TriggerConfig:
    """When to retrain. Seed fields first; the rest make the rules safe to run unattended.

    - ``min_window_samples``: scored records needed in *both* windows before a quality
      drop can be claimed;
    - ``min_feedback_for_error_rate``: records with feedback needed in the error window;
    - ``retry_backoff_hours``: after a failed or too-small retrain, wait this long before
      trying again, doubling with each further failure (never more than the cooldown).
    """

    enable_sample_count: Flag = True
    min_new_samples: Count = 1000
    min_quality_score: Fraction = 0.7
    enable_scheduled: Flag = True
    schedule_interval_hours: PositiveHours = 168
    enable_quality_drop: Flag = True
    quality_drop_threshold: Fraction = 0.1
    quality_window_hours: PositiveHours = 24
    enable_error_rate: Flag = False
    error_rate_threshold: Fraction = 0.2
    error_window_hours: PositiveHours = 24
    min_samples_for_retrain: Count = 100
    cooldown_hours: Hours = 24
    min_window_samples: Count = 30
    min_feedback_for_error_rate: Count = 20
    retry_backoff_hours: Hours = 1.0


KNOWN_METRICS = (
    "avg_quality_score",
    "positive_feedback_rate",
    "negative_feedback_rate",
    "feedback_rate",
    "avg_latency_ms",
)


def _default_metric_weights() -> dict[str, float]:
    return {"avg_quality_score": 0.5, "positive_feedback_rate": 0.3, "avg_latency_ms": -0.2}


@dataclass(config=STRICT)
class ABTestConfig:
    """How a challenger is tested against the champion (see the seed, "A/B Testing").

    ``decision_method="sequential"`` (the default) judges with always-valid statistics
    (see docs/statistics.md): ``alpha``, ``min_effect`` (absolute quality), guardrail
    margins, minimum data per arm, ``max_duration_hours``; ``planned_challenger_requests``
    places the boundary. ``min_duration_hours`` delays promotion only.
    ``"weighted"`` is the seed's rule: a weighted relative difference of the ``metrics``
    over the last ``evaluation_window_hours``, against ``min_improvement_threshold`` and
    ``promotion_threshold``, after ``min_samples_per_version`` records per version (a
    negative weight means lower is better).
    ``routing="thompson"`` (off by default) lets a bandit move traffic towards the
    better-looking version (never below ``min_arm_share`` per arm) once the first,
    fixed-split epoch has the minimum data; the promotion test judges fixed-split epochs
    only, never the bandit's.
    ``traffic_split_percent`` and ``duration_hours`` are read/write views of
    ``initial_challenger_traffic`` and ``min_duration_hours``.
    """

    def decision_settings(self) -> DecisionSettings:
        return DecisionSettings(
            alpha=self.alpha,
            min_effect=self.min_effect,
            latency_margin=self.latency_margin,
            error_rate_margin=self.error_rate_margin,
            negative_feedback_margin=self.negative_feedback_margin,
            error_ratio=self.error_ratio,
            unit=self.unit,
            min_units=self.min_units_per_arm,
            min_requests=self.min_requests_per_arm,
            min_feedback=self.min_feedback_per_arm,
            max_duration_hours=self.max_duration_hours,
            min_duration_hours=self.min_duration_hours,
            strict_guardrails=self.strict_guardrails,
            planned_challenger_requests=self.planned_challenger_requests,
            planned_challenger_share=min(max(self.initial_challenger_traffic, 0.01), 0.99),
        )

    initial_challenger_traffic: Fraction = 0.1
    min_samples_per_version: Count = 100
    evaluation_window_hours: PositiveHours = 24
    min_improvement_threshold: Fraction = 0.05
    metrics: list[str] = field(default_factory=lambda: list(_default_metric_weights()))
    metric_weights: dict[str, Annotated[float, Strict(), Field(allow_inf_nan=False)]] = field(
        default_factory=_default_metric_weights
    )
    enable_auto_promotion: Flag = True
    promotion_threshold: Fraction = 0.05
    min_duration_hours: Hours = 48
    decision_method: Literal["sequential", "weighted"] = "sequential"
    alpha: Annotated[float, Strict(), Field(gt=0, lt=0.5, allow_inf_nan=False)] = 0.05
    min_effect: Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)] = 0.0
    max_duration_hours: PositiveHours = 168
    latency_margin: Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)] = 0.10
    error_rate_margin: Fraction = 0.01
    negative_feedback_margin: Fraction = 0.05
    error_ratio: Annotated[float, Strict(), Field(gt=1, le=100, allow_inf_nan=False)] = 2.0
    unit: Literal["request", "key"] = "request"
    min_units_per_arm: Annotated[int, Strict(), Field(ge=2, le=1_000_000_000)] = 20
    min_requests_per_arm: Count = 200
    min_feedback_per_arm: Count = 20
    strict_guardrails: Flag = False
    planned_challenger_requests: Annotated[int, Strict(), Field(ge=10)] = 1000
    routing: Literal["fixed", "thompson"] = "fixed"
    min_arm_share: Annotated[float, Strict(), Field(gt=0, le=0.5, allow_inf_nan=False)] = 0.1

    def __post_init__(self) -> None:
        missing = [m for m in self.metrics if m not in self.metric_weights]
        if missing:
            raise ValueError(f"metric_weights has no weight for metric(s) {missing}")

    @property
    def traffic_split_percent(self) -> float:
        return self.initial_challenger_traffic * 100

    @traffic_split_percent.setter
    def traffic_split_percent(self, percent: float) -> None:
        self.initial_challenger_traffic = percent / 100

    @property
    def duration_hours(self) -> float:
        return self.min_duration_hours

    @duration_hours.setter
    def duration_hours(self, hours: float) -> None:
        self.min_duration_hours = hours


DEFAULT_DB = "~/.context/training/continuous/usage.db"
DEFAULT_OUTPUT_DIR = "~/.context/training/continuous"


# LoopConfig may hold a database URL with its password: pydantic's errors would otherwise
# quote every argument given (our own messages name the field and what is wrong).
LOOP_STRICT = ConfigDict(**STRICT, hide_input_in_errors=True)


@dataclass(config=LOOP_STRICT)
class LoopConfig:
    """The whole loop (see the seed, "Configuration file").

    Paths are expanded (``~``) when the config is built. ``models_dir`` defaults to
    ``output_dir/models``. ``train_command`` runs a trainer outside Python:
    ``{data_path}`` and ``{output_dir}`` in it are replaced, and the command must print a
    JSON object (``model_path``, ``metrics``, optionally ``model_name``) as its last line.
    ``champion_model`` names the model serving today; when unset, the loop takes the
    model with the most logged traffic as the first champion. ``database_url``
    (``postgresql://…``) puts the usage records in PostgreSQL instead of ``db_path``; a
    URL given as ``db_path`` is taken as ``database_url``.
    """

    @property
    def database(self) -> str | Path:
        """Where the usage records live: the URL if set, else the SQLite file."""
        return self.database_url if self.database_url is not None else Path(self.db_path)

    db_path: str | Path = DEFAULT_DB
    database_url: str | None = None
    output_dir: str | Path = DEFAULT_OUTPUT_DIR
    models_dir: str | Path | None = None
    trigger_config: TriggerConfig = field(default_factory=TriggerConfig)
    generator_config: DataGeneratorConfig = field(default_factory=DataGeneratorConfig)
    ab_test_config: ABTestConfig = field(default_factory=ABTestConfig)
    check_interval_seconds: PositiveSeconds = 3600
    enable_ab_testing: Flag = True
    enable_auto_promotion: Flag = True
    train_command: str | None = None
    train_timeout_seconds: PositiveSeconds = 21600
    champion_model: str | None = None
    champion_path: str = ""
    max_errors: Annotated[int, Strict(), Field(ge=1)] = 50

    def __post_init__(self) -> None:
        url_as_path = isinstance(self.db_path, str) and "://" in self.db_path
        if (
            url_as_path
            and self.database_url is None
            and not str(self.db_path).startswith("sqlite:")
        ):
            self.database_url, self.db_path = str(self.db_path), DEFAULT_DB
        self.db_path = Path(self.db_path).expanduser()
        if self.database_url is not None and not self.database_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError(
                "database_url must be a postgresql:// URL, "
                f"got {redact_secrets(self.database_url)!r}"
            )
        self.output_dir = Path(self.output_dir).expanduser()
        self.models_dir = (
            self.output_dir / "models"
            if self.models_dir is None
            else Path(self.models_dir).expanduser()
        )

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir or self.output_path / "models")


def load_loop_config(path: str | Path) -> LoopConfig:
    """A :class:`LoopConfig` from a JSON or YAML file; errors name the file and key."""
    return build_config(LoopConfig, load_config_file(path), source=str(path))


class ConfigError(ContinuousError, ValueError):
    """A configuration file or mapping is malformed; the message names the key."""


T = TypeVar("T")


def build_config(cls: type[T], data: Any, *, source: str) -> T:
    """Construct ``cls`` from a mapping, turning validation errors into one clear line each."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return cls(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(config)'}: {_describe(err)}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc
    except TypeError as exc:  # e.g. keys that are not strings
        raise ConfigError(f"{source}: {exc}") from exc


def _describe(err: Any) -> str:
    if err["type"] == "unexpected_keyword_argument":
        return "unknown setting"
    if not err["loc"]:  # a check of the whole config: its message names the value (masked)
        return str(err["msg"])
    shown = redact_secrets(repr(err["input"]))
    if len(shown) > MAX_ECHO_CHARS:  # never the whole input: it may be huge (or a bomb)
        shown = f"{shown[:MAX_ECHO_CHARS]}… ({type(err['input']).__name__})"
    return f"{err['msg']} (got {shown})"


#: a configuration file is settings, not data: larger files are refused unread
MAX_CONFIG_BYTES = 1 << 20
#: how many values a configuration file may hold once its YAML aliases are expanded
MAX_EXPANDED_NODES = 100_000
#: how much of a bad value an error message repeats
MAX_ECHO_CHARS = 200


def _expanded_size(node: yaml.Node, sizes: dict[int, float]) -> float:
    """How many nodes ``node`` stands for once every alias in it is expanded (infinite
    for a recursive one); memoised, so the cost is that of the document as written."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    sizes[key] = math.inf  # until known: a node reached again while being sized is a cycle
    total = 1.0
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[key] = total
    return total


def _load_yaml(text: str) -> Any:
    """``safe_load``, refusing documents whose aliases expand past
    :data:`MAX_EXPANDED_NODES` (a few hundred bytes of nested aliases, "billion laughs",
    stand for more values than any program can check or print)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise yaml.YAMLError(f"its aliases expand to more than {MAX_EXPANDED_NODES} values")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML mapping (chosen by extension; ``.json`` is JSON, else YAML)."""
    file = Path(path).expanduser()
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file ({exc.strerror})") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if file.suffix == ".json" else _load_yaml(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason})") from exc
    except RecursionError as exc:
        raise ConfigError(f"{file}: nested too deeply") from exc
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{file}: not valid {'JSON' if file.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of settings at the top level")
    return data
