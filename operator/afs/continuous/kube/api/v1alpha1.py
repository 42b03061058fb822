"""``continuous.afs.dev/v1alpha1``: LearningLoop, ABTest and ModelVersion.

These pydantic models are the single source of truth: ``crds/*.yaml`` is generated from
them (:mod:`afs.continuous.kube.crds`), and the operator parses every object through
them, so a spec the API server accepted and the operator's idea of it never diverge.
Fields are camelCase in YAML (aliases) and snake_case in Python.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from afs.continuous.kube.api.base import (
    DNS_SUBDOMAIN as DNS_SUBDOMAIN,
    MAX_COUNT as MAX_COUNT,
    MAX_HOURS as MAX_HOURS,
    Condition as Condition,
    ConditionStatus as ConditionStatus,
    Count as Count,
    Duration as Duration,
    Fraction as Fraction,
    Hours as Hours,
    KubeModel as KubeModel,
    LocalObjectReference as LocalObjectReference,
    PositiveHours as PositiveHours,
    SecretKeyRef as SecretKeyRef,
    check_pod_template,
)
from afs.continuous.kube.api.evaluation import EvaluationSpec, EvaluationStatus
from afs.continuous.kube.api.privacy import DatasetRedaction, RedactionSummary
from afs.continuous.kube.api.scoring import ScoringSpec
from afs.continuous.kube.api.traffic import (
    ABTestSettings as ABTestSettings,
    DecisionSpec as DecisionSpec,
    TargetRef as TargetRef,
    TrafficSpec as TrafficSpec,
)
from afs.continuous.splits import DEFAULT_EVALUATION_SPLIT, check_split

if TYPE_CHECKING:
    from afs.continuous.config import DataGeneratorConfig, TriggerConfig

GROUP = "continuous.afs.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: a DNS subdomain, what most object names must be
#: an object-storage URL fsspec writes to: a scheme of its remote file systems, a bucket
STORAGE_URI = r"^(s3|gs|gcs|az|abfs|abfss)://[^\s/][^\s]*$"
#: where the training pods see the data volume (the data set, and AFS_OUTPUT_DIR in it)
DATA_DIR = "/data"
#: the kinds a run can train with; all but Job run on several pods
TrainingKind = Literal["Job", "TrainJob", "PyTorchJob", "RayJob"]

# --- LearningLoop --------------------------------------------------------------------


class ModelSelector(KubeModel):
    """Which usage records the loop watches: the logical model name, optionally one expert."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    expert: str | None = None


class DatabaseSpec(KubeModel):
    """Where the usage records are: a Secret key holding the postgresql:// URL (never a
    literal password in a spec)."""

    url_secret_ref: SecretKeyRef


class TriggerSpec(KubeModel):
    """The fields of ``TriggerConfig``, camelCase."""

    enable_sample_count: bool = True
    min_new_samples: Count = 1000
    min_quality_score: Fraction = 0.7
    enable_scheduled: bool = True
    schedule_interval_hours: PositiveHours = 168
    enable_quality_drop: bool = True
    quality_drop_threshold: Fraction = 0.1
    quality_window_hours: Annotated[float, Field(gt=0, le=MAX_HOURS / 2)] = 24
    """Two windows back to back: the current one and the one before."""
    enable_error_rate: bool = False
    error_rate_threshold: Fraction = 0.2
    error_window_hours: PositiveHours = 24
    min_samples_for_retrain: Count = 100
    cooldown_hours: Hours = 24
    min_window_samples: Count = 30
    min_feedback_for_error_rate: Count = 20
    retry_backoff_hours: Hours = 1.0

    def to_config(self) -> TriggerConfig:
        """The same settings for the trigger core the local loop uses."""
        from afs.continuous.config import TriggerConfig

        return TriggerConfig(**self.model_dump())


class DatasetSpec(KubeModel):
    """The fields of ``DataGeneratorConfig`` plus where the file goes."""

    #: the fields that say where the data set goes (the others are the generator's)
    WHERE: ClassVar[set[str]] = {
        "path", "volume_size_limit", "volume_claim", "storage_uri", "credentials_secret_ref",
    }  # fmt: skip

    min_quality_score: Fraction = 0.7
    min_user_feedback: Annotated[int, Field(ge=-1, le=1)] | None = 1
    deduplicate: bool = True
    max_samples: Count | None = None
    format_type: Literal["chatml", "alpaca", "completion", "openai", "dpo", "kto"] = "chatml"
    path: Annotated[str, Field(pattern=r"^/[^\x00]*$", max_length=4096)] = "/data/dataset.jsonl"
    """Where the data set is written in the training pods (an absolute path)."""
    volume_size_limit: str = "10Gi"
    volume_claim: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)] | None = None
    """A ``ReadWriteMany`` PersistentVolumeClaim: the data set is written to it once and
    every training pod mounts the run's own directory of it at ``/data``."""
    storage_uri: Annotated[str, Field(pattern=STORAGE_URI, max_length=2048)] | None = None
    """An object-storage prefix (``s3://``, ``gs://``, ``az://``…): the data set is
    uploaded once to ``<storageUri>/<run>/dataset.jsonl`` and the trainer gets the URL."""
    credentials_secret_ref: LocalObjectReference | None = None
    """A Secret whose keys the exporter gets as environment variables (e.g.
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``)."""
    split: Annotated[list[Fraction], Field(min_length=3, max_length=3)] | None = None
    """``[train, validation, test]`` fractions: the held-out sets are written beside the
    data set (``<name>.validation.jsonl``, ``<name>.test.jsonl``) by a stable hash of each
    record's assignment key; with ``spec.evaluation`` and no split, 0.9/0.05/0.05."""
    redaction: DatasetRedaction = Field(default_factory=DatasetRedaction)
    """Personal data and secrets are redacted in every data set unless ``enabled: false``."""

    @model_validator(mode="after")
    def _one_location(self) -> Self:
        if self.volume_claim is not None and self.storage_uri is not None:
            raise ValueError("give at most one of volumeClaim and storageUri")
        if self.credentials_secret_ref is not None and self.storage_uri is None:
            raise ValueError("credentialsSecretRef is for storageUri: set it too, or remove it")
        if self.volume_claim is not None and not self.path.startswith(f"{DATA_DIR}/"):
            raise ValueError(f"path: with volumeClaim the data set must be under {DATA_DIR}/")
        return self

    def to_config(self) -> DataGeneratorConfig:
        """The generator settings (no rehearsal buffer: the Job's volume is fresh)."""
        from afs.continuous.config import DataGeneratorConfig

        values = self.model_dump(exclude=self.WHERE | {"redaction", "split"})
        return DataGeneratorConfig(
            include_existing_data=False,
            redaction=self.redaction.to_config(),
            split=None if self.split is None else (self.split[0], self.split[1], self.split[2]),
            **values,
        )


class TrainingSpec(KubeModel):
    """The trainer: a pod template (its first container is the trainer), the kind of
    object that runs it, and its limits."""

    kind: TrainingKind = "Job"
    """``Job`` (one pod), or a distributed engine: ``TrainJob`` (Kubeflow Trainer v2),
    ``PyTorchJob`` (Kubeflow Training Operator), ``RayJob`` (KubeRay)."""
    nodes: Annotated[int, Field(ge=1, le=1000)] = 1
    """How many pods train together (PyTorchJob: the master and nodes−1 workers; RayJob:
    the head and nodes−1 workers; TrainJob: numNodes)."""
    spec: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """More fields of the kind's own spec (e.g. a TrainJob's ``runtimeRef``, a
    PyTorchJob's ``nprocPerNode``), merged with those the operator sets; setting one of
    those is refused."""
    template: dict[str, Any] = Field(
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    exporter_image: str | None = None
    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 0
    active_deadline_seconds: Annotated[int, Field(gt=0, le=int(MAX_HOURS * 3600))] | None = (
        7 * 86400
    )
    """A run that takes longer is stopped (a week unless set; null: no deadline)."""
    ttl_seconds_after_finished: Annotated[int, Field(ge=0, le=int(MAX_HOURS * 3600))] | None = 86400

    @field_validator("template")
    @classmethod
    def _has_a_trainer(cls, template: dict[str, Any]) -> dict[str, Any]:
        """The first container is the trainer: it must be there, named, with an image."""
        return check_pod_template(template, "trainer")

    @model_validator(mode="after")
    def _fits_the_kind(self) -> Self:
        if self.kind == "Job" and self.nodes != 1:
            raise ValueError(
                "nodes: a Job trains on one pod; choose kind TrainJob, PyTorchJob or RayJob"
            )
        first = self.template["spec"]["containers"][0]["name"]
        if self.kind == "PyTorchJob" and first != "pytorch":
            raise ValueError(
                "template.spec.containers.0.name: a PyTorchJob's trainer container must be "
                f"named 'pytorch' (the training operator looks for it), not {first!r}"
            )
        return self


class ServingSpec(KubeModel):
    """Deploy mode: the operator runs each ModelVersion itself, as a Deployment and a
    Service named like the version, for the providers that route to Services
    (gateway-api, istio, smi). The pod comes from ``template`` or from the pod template of
    the Deployment ``copyFrom`` names (the champion's, as Flagger does); the model's
    container gets ``AFS_MODEL_URI`` and ``AFS_MODEL_VERSION``."""

    template: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    copy_from: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    container: Annotated[str, Field(min_length=1)] | None = None
    """The model's container (default: the first)."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    """The container port the Service sends to."""
    service_port: Annotated[int, Field(ge=1, le=65535)] = 80
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    scale_down_after: Duration = "1h"
    """How long a Rejected or Retired version keeps running (a promotion that turns out
    bad can be undone at once), before its Deployment is scaled to zero."""
    delete_after: Duration = "24h"
    """How long after the scale-down its Deployment and Service are deleted."""

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.template is None) == (self.copy_from is None):
            raise ValueError("give exactly one of template and copyFrom")
        if self.template is not None:
            spec = self.template.get("spec")
            containers = spec.get("containers") if isinstance(spec, dict) else None
            if not isinstance(containers, list) or not containers:
                raise ValueError("template.spec.containers must list the model's container")
            names = [c.get("name") for c in containers if isinstance(c, dict)]
            if self.container is not None and self.container not in names:
                raise ValueError(f"container {self.container!r} is not in template.spec")
        return self


class PromotionSpec(KubeModel):
    """What a new ModelVersion goes on to. With ``traffic`` and a champion, the loop
    starts an ABTest of the new version against the champion; without either, the new
    version stays a Candidate (recorded, never served by the loop)."""

    mode: Literal["auto", "manual"] = "auto"
    champion: str | None = None
    """The ModelVersion serving now, before the loop has a champion of its own."""
    traffic: TrafficSpec | None = None
    """Where the ABTest shifts traffic; unset means no ABTest."""
    ab_test: ABTestSettings = Field(default_factory=ABTestSettings)


class LearningLoopSpec(KubeModel):
    model: ModelSelector
    database: DatabaseSpec
    triggers: TriggerSpec = Field(default_factory=TriggerSpec)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    training: TrainingSpec
    check_interval: Duration = "1h"
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    serving: ServingSpec | None = None
    """Deploy mode: each ModelVersion the loop records is run by the operator (the spec
    is copied onto the version); unset, the backends must exist already."""
    evaluation: EvaluationSpec | None = None
    """The offline gate a trained version must pass before its ABTest starts."""
    scoring: ScoringSpec | None = None
    """How each run's exporter scores the unscored records first (unset: it does not)."""
    suspend: bool = False

    @property
    def split(self) -> tuple[float, float, float] | None:
        """The data set's split: as given, else the default an evaluation gate needs."""
        if self.dataset.split is not None:
            return (self.dataset.split[0], self.dataset.split[1], self.dataset.split[2])
        return DEFAULT_EVALUATION_SPLIT if self.evaluation is not None else None

    @model_validator(mode="after")
    def _split_sums_to_one(self) -> Self:
        if self.dataset.split is not None:
            check_split(self.dataset.split, field="dataset.split")
        return self

    @model_validator(mode="after")
    def _dataset_reaches_every_pod(self) -> Self:
        """The pods of a distributed run share no volume unless the user names one: the
        data set goes to a claim they all mount, or to object storage they all read."""
        dataset = self.dataset
        if (
            self.training.kind != "Job"
            and dataset.volume_claim is None
            and (dataset.storage_uri is None)
        ):
            raise ValueError(
                f"dataset: a {self.training.kind} runs on several pods; set "
                "dataset.volumeClaim (a ReadWriteMany claim) or dataset.storageUri "
                "(object storage) so that every pod reads the same data set"
            )
        return self


class TriggerOutcome(KubeModel):
    type: str | None = None
    reason: str = ""
    metrics: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    time: str | None = None


class CurrentRun(KubeModel):
    number: int
    job: str
    """The training object's name (a Job, or the object of ``kind``)."""
    started: str
    kind: TrainingKind | None = None
    """Unset for a Job."""
    phase: Literal["Exporting", "Training", "Evaluating"] | None = None
    """A distributed run exports its data set (a Job of its own) before its training
    object is created; unset for a Job. ``Evaluating``: trained, its ModelVersion
    recorded, the evaluation gate's Job running."""
    model_version: str | None = None
    """The version being evaluated."""
    dataset_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    sample_count: Annotated[int, Field(ge=0)] | None = None
    dataset_id: Annotated[str, Field(max_length=512)] | None = None
    redaction: RedactionSummary | None = None
    """What the export's redaction found (None: not redacted, or not known yet)."""


class RunOutcome(KubeModel):
    number: int
    job: str
    result: Literal["Succeeded", "Failed", "Rejected"]
    """``Rejected``: trained, but the evaluation gate refused the version."""
    finished: str
    model_version: str | None = None
    message: str = ""


class RunsSummary(KubeModel):
    count: int = 0
    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    recent: list[RunOutcome] = Field(default_factory=list)


class LoopPhase(StrEnum):
    PENDING = "Pending"
    WATCHING = "Watching"
    TRAINING = "Training"
    TESTING = "Testing"
    SUSPENDED = "Suspended"
    FAILED = "Failed"


class LearningLoopStatus(KubeModel):
    phase: LoopPhase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    last_check_time: str | None = None
    last_trigger: TriggerOutcome | None = None
    current_run: CurrentRun | None = None
    runs: RunsSummary = Field(default_factory=RunsSummary)
    last_retrain_time: str | None = None
    champion: str | None = None
    champion_model: str | None = None
    """The ``model`` the champion's usage records are logged under, once an ABTest has
    promoted one (the triggers and the next data set count these); else ``spec.model``."""
    challenger: str | None = None


# --- ModelVersion --------------------------------------------------------------------


class Lineage(KubeModel):
    loop: str | None = None
    run: int | None = None
    dataset_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    sample_count: Annotated[int, Field(ge=0)] | None = None
    dataset_id: Annotated[str, Field(max_length=512)] | None = None
    """The data set's id in the usage database (``afs-continuous lineage``, ``forget``)."""
    redaction: RedactionSummary | None = None
    job: str | None = None
    training_kind: str | None = None
    """The kind of object that trained it, when not a Job."""
    parent: str | None = None


class ModelVersionSpec(KubeModel):
    model: Annotated[str, Field(min_length=1)]
    version: Annotated[str, Field(min_length=1)]
    uri: Annotated[str, Field(min_length=1)]
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    serving: ServingSpec | None = None
    """Deploy mode: the operator runs this version (see :class:`ServingSpec`)."""


class Stage(StrEnum):
    CANDIDATE = "Candidate"
    CHALLENGER = "Challenger"
    CHAMPION = "Champion"
    RETIRED = "Retired"
    REJECTED = "Rejected"


class ServingStatus(KubeModel):
    """Deploy mode: what runs this version, and since when it is no arm any more."""

    deployment: str
    service: str
    available: bool = False
    idle_since: str | None = None
    """When the version was first seen Rejected or Retired."""
    scaled_down: str | None = None
    """When its Deployment went to zero replicas."""


class ModelVersionStatus(KubeModel):
    stage: Stage | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    serving: ServingStatus | None = None
    evaluation: EvaluationStatus | None = None


# --- ABTest ------------------------------------------------------------------------------


class VersionRef(KubeModel):
    model_version: Annotated[str, Field(min_length=1)]
    """Name of a ModelVersion in the same namespace."""
    serving_name: str | None = None
    """The backend name the traffic provider routes to (defaults to the version)."""
    usage_model: str | None = None
    """The ``model`` this arm's usage records are logged under (defaults to the version)."""

    @property
    def backend(self) -> str:
        return self.serving_name or self.model_version

    @property
    def records(self) -> str:
        return self.usage_model or self.model_version


class Step(KubeModel):
    weight: Annotated[int, Field(ge=0, le=100)]
    """Challenger share, percent."""
    pause: Duration | None = None
    """How long the step lasts at least (unset: until the next analysis)."""


class ABTestSpec(KubeModel):
    champion: VersionRef
    challenger: VersionRef
    traffic: TrafficSpec
    steps: Annotated[list[Step], Field(min_length=1)] = Field(
        default_factory=lambda: [Step(weight=10)]
    )
    decision: DecisionSpec = Field(default_factory=DecisionSpec)
    promotion: Literal["auto", "manual"] = "auto"
    database: DatabaseSpec | None = None
    """Where the arms' usage records are (default: the owning LearningLoop's database)."""
    analysis_interval: Duration | None = None
    """How often the test is judged (default: the operator's poll interval)."""
    approved_challenger: str | None = None
    """With ``promotion: manual``: the challenger approved for promotion (kept in Git)."""


class ABTestPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    WAITING_PROMOTION = "WaitingPromotion"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    INCONCLUSIVE = "Inconclusive"
    HALTED = "Halted"

    @property
    def finished(self) -> bool:
        return self not in (
            ABTestPhase.PENDING, ABTestPhase.RUNNING, ABTestPhase.WAITING_PROMOTION
        )  # fmt: skip


class ArmWeights(KubeModel):
    champion: Annotated[int, Field(ge=0)]
    challenger: Annotated[int, Field(ge=0)]


class RuleWeights(KubeModel):
    """The weights one rule of the serving resource had before the test (None: unset,
    the provider's default), restored exactly when the test ends without a promotion."""

    rule: Annotated[int, Field(ge=0)]
    champion: int | None = None
    challenger: int | None = None


class EpochStatus(KubeModel):
    """A period of constant weights. ``applied`` is when they were written, ``start``
    when the serving resource accepted them (records count from then)."""

    step: Annotated[int, Field(ge=0)]
    weights: ArmWeights
    applied: str
    start: str | None = None


class ABTestStatus(KubeModel):
    phase: ABTestPhase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    step: int = 0
    weights: ArmWeights | None = None
    """The weights this test last wrote."""
    original: list[RuleWeights] | None = None
    epochs: list[EpochStatus] = Field(default_factory=list)
    started: str | None = None
    finished: str | None = None
    last_analysis_time: str | None = None
    verdict: str | None = None
    reason: str = ""
    evidence: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    database_unavailable_since: str | None = None
    """When a running test last lost its usage database (unset while it can read it)."""


# --- the kinds ---------------------------------------------------------------------------


class Kind(KubeModel):
    """What the CRD generator needs to know about one kind."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    spec: type[KubeModel]
    status: type[KubeModel]
    printer_columns: list[dict[str, str]]


KINDS = (
    Kind(
        kind="LearningLoop", plural="learningloops", singular="learningloop",
        short_names=["ll"], spec=LearningLoopSpec, status=LearningLoopStatus,
        printer_columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Champion", "type": "string", "jsonPath": ".status.champion"},
            {"name": "Challenger", "type": "string", "jsonPath": ".status.challenger"},
            {"name": "Last Trigger", "type": "string", "jsonPath": ".status.lastTrigger.type"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    ),
    Kind(
        kind="ABTest", plural="abtests", singular="abtest", short_names=["abt"],
        spec=ABTestSpec, status=ABTestStatus,
        printer_columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Champion", "type": "string", "jsonPath": ".spec.champion.modelVersion"},
            {"name": "Challenger", "type": "string", "jsonPath": ".spec.challenger.modelVersion"},
            {"name": "Step", "type": "integer", "jsonPath": ".status.step"},
            {"name": "Weight", "type": "integer", "jsonPath": ".status.weights.challenger"},
            {"name": "Verdict", "type": "string", "jsonPath": ".status.verdict"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    ),
    Kind(
        kind="ModelVersion", plural="modelversions", singular="modelversion",
        short_names=["mv"], spec=ModelVersionSpec, status=ModelVersionStatus,
        printer_columns=[
            {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
            {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
            {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    ),
)  # fmt: skip
