"""afs.continuous: production usage → training data → retraining → A/B → promotion.

The public API follows the seed document (docs/CONTINUOUS_LEARNING.md). Names listed in
the seed but not yet implemented (triggers, A/B testing, the loop) will be exported from
their fixed modules ``trigger``, ``ab_test`` and ``loop`` when they land.
"""

from afs.continuous.config import DataGeneratorConfig
from afs.continuous.errors import InvalidBatchError, InvalidFieldError
from afs.continuous.generator import GenerationResult, TrainingDataGenerator
from afs.continuous.logger import UsageDatabase, UsageLogger
from afs.continuous.records import UsageRecord
from afs.continuous.scoring import HeuristicScorer, QualityScorer

__all__ = [
    "DataGeneratorConfig",
    "GenerationResult",
    "HeuristicScorer",
    "InvalidBatchError",
    "InvalidFieldError",
    "QualityScorer",
    "TrainingDataGenerator",
    "UsageDatabase",
    "UsageLogger",
    "UsageRecord",
]

__version__ = "0.1.0"
