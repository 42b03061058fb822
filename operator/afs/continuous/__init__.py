"""afs.continuous: production usage → training data → retraining → A/B → promotion.

The public API follows the system document (docs/CONTINUOUS_LEARNING.md).
"""

from afs.continuous.ab_test import (
    ABTestConfig,
    ABTestManager,
    ABTestResult,
    ModelStatus,
    ModelVersion,
    TrafficSplit,
)
from afs.continuous.config import DataGeneratorConfig, LoopConfig, TriggerConfig
from afs.continuous.core.evaluation import EvaluationRule, MetricRule
from afs.continuous.errors import InvalidBatchError, InvalidFieldError
from afs.continuous.generator import GenerationResult, TrainingDataGenerator
from afs.continuous.logger import UsageDatabase, UsageLogger
from afs.continuous.loop import ContinuousLearningLoop, LoopStatus
from afs.continuous.records import UsageRecord
from afs.continuous.scoring import HeuristicScorer, QualityScorer
from afs.continuous.trigger import AutoRetrainer, RetrainTrigger, TriggerResult, TriggerType

__all__ = [
    "ABTestConfig",
    "ABTestManager",
    "ABTestResult",
    "AutoRetrainer",
    "ContinuousLearningLoop",
    "DataGeneratorConfig",
    "EvaluationRule",
    "GenerationResult",
    "HeuristicScorer",
    "InvalidBatchError",
    "InvalidFieldError",
    "LoopConfig",
    "LoopStatus",
    "MetricRule",
    "ModelStatus",
    "ModelVersion",
    "QualityScorer",
    "RetrainTrigger",
    "TrafficSplit",
    "TrainingDataGenerator",
    "TriggerConfig",
    "TriggerResult",
    "TriggerType",
    "UsageDatabase",
    "UsageLogger",
    "UsageRecord",
]

__version__ = "0.1.0"
