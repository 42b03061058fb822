"""Retraining triggers (the seed's ``RetrainTrigger`` and ``AutoRetrainer``).

The decision is :func:`afs.continuous.core.triggers.decide`; this module gathers its
inputs from the store, persists the trigger's state there (so a restart keeps cooldown,
back-off, schedule and baseline), and runs the retrain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from afs.continuous.config import DataGeneratorConfig, TriggerConfig
from afs.continuous.core import triggers as core
from afs.continuous.core.evaluation import EvaluationRule, judge_evaluation
from afs.continuous.core.triggers import TriggerState, TriggerType
from afs.continuous.generator import GenerationResult, TrainingDataGenerator
from afs.continuous.logger import UsageDatabase, UsageLogger
from afs.continuous.splits import DEFAULT_EVALUATION_SPLIT
from afs.continuous.store import UsageStore
from afs.continuous.timeutil import Clock, format_timestamp, utc_now

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = "~/.context/training/continuous"

__all__ = [
    "AutoRetrainer",
    "EvalFn",
    "RetrainTrigger",
    "TrainFn",
    "TriggerConfig",
    "TriggerResult",
    "TriggerState",
    "TriggerType",
]

#: called with the data set's path (a ``Path``); returns what training reported
TrainFn = Callable[[Path], dict[str, Any]]
EvalFn = Callable[[str, str | None, str | None], Mapping[str, Any]]
"""``eval_fn(model_path, test_path, golden_path) -> metrics``: a model's metrics on the
held-out test set (and the golden set, as ``golden_pass_rate``); either path may be None."""


@dataclass
class TriggerResult:
    """The outcome of one check: whether to retrain, which rule, why, and the numbers."""

    triggered: bool
    trigger_type: TriggerType | None
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)
    timestamp: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "triggered": self.triggered,
            "type": None if self.trigger_type is None else self.trigger_type.value,
            "reason": self.reason,
            "metrics": self.metrics,
            "timestamp": self.timestamp,
        }


class RetrainTrigger:
    """Decides when to retrain (see the seed, "Trigger Types").

    The sample count counts what the data set that will be built accepts, when the
    trigger is given that data set's ``generator_config`` (``AutoRetrainer``, the loop
    and the operator give theirs). Without one it counts what the seed describes:
    de-duplicated records since the last retrain with quality at least the trigger's
    ``min_quality_score``, whatever their feedback.
    """

    def __init__(
        self,
        usage_logger: UsageLogger | UsageDatabase,
        config: TriggerConfig | None = None,
        *,
        generator_config: DataGeneratorConfig | None = None,
        state_key: str = "retrain_trigger",
        clock: Clock = utc_now,
    ) -> None:
        self.usage_logger = usage_logger
        self.config = config if config is not None else TriggerConfig()
        self.generator_config = generator_config or DataGeneratorConfig(
            min_quality_score=self.config.min_quality_score, min_user_feedback=None
        )
        self.state_key = state_key
        self._clock = clock

    @property
    def store(self) -> UsageStore:
        return self.usage_logger.store

    @property
    def state(self) -> TriggerState:
        data = self.store.get_state(self.state_key)
        return TriggerState() if data is None else TriggerState.from_dict(data)

    def _save(self, state: TriggerState) -> None:
        self.store.put_state(self.state_key, state.to_dict(), at=self._clock())

    def observe(self, state: TriggerState, now: datetime) -> core.Observations:
        """Gather what the decision needs: a capped sample count and three windows."""
        cap = core.sample_cap(self.config)
        selection = TrainingDataGenerator(self.usage_logger, self.generator_config).selection(
            state.last_retrain
        )
        spans = core.windows(self.config, now)
        stats = self.store.statistics
        # windows that end "now" stay open: a record logged this instant belongs to them
        return core.Observations(
            new_samples=self.store.count_training_samples(selection, cap=cap),
            sample_cap=cap,
            quality_current=stats(since=spans.quality_current[0]),
            quality_previous=stats(
                since=spans.quality_previous[0], until=spans.quality_previous[1]
            ),
            errors=stats(since=spans.errors[0]),
        )

    def check_triggers(self) -> TriggerResult:
        """Evaluate every enabled rule now; the first schedule check anchors the schedule."""
        now = self._clock()
        state = self.state
        if state.schedule_anchor is None and state.last_retrain is None:
            state = replace(state, schedule_anchor=now)
            self._save(state)
        decision = core.decide(self.config, state, self.observe(state, now), now)
        return TriggerResult(
            decision.triggered,
            decision.trigger_type,
            decision.reason,
            decision.metrics,
            format_timestamp(now),
        )

    def force_trigger(self, reason: str = "Manual trigger") -> TriggerResult:
        """A manual trigger: fires now, whatever the cooldown or the rules say."""
        now = self._clock()
        state = self.state
        metrics = core.decide(self.config, state, self.observe(state, now), now).metrics
        return TriggerResult(True, TriggerType.MANUAL, reason, metrics, format_timestamp(now))

    def mark_retrain_completed(self) -> None:
        """Start the cooldown and record the current quality as the new baseline."""
        now = self._clock()
        current = core.windows(self.config, now).quality_current
        baseline = self.store.statistics(since=current[0])
        self._save(self.state.retrained(now, baseline=baseline))

    def mark_retrain_failed(self) -> None:
        """Record a failed (or too small) attempt; the next one waits for the back-off."""
        self._save(self.state.attempted(self._clock(), succeeded=False))


class AutoRetrainer:
    """Checks the triggers and, when one fires, builds the data set and trains.

    ``check_and_retrain`` returns None when nothing fired, else a dict with ``trigger``,
    ``generation``, ``timestamp``, ``status`` (``completed``, ``failed``, ``rejected`` or
    ``data_ready`` when no ``train_fn`` was given) and ``training`` or ``error``. A
    ``data_ready`` result counts as a retrain for cooldown purposes: the data set was
    handed off.

    With ``eval_fn``, a trained model must pass the ``evaluation`` rule on the held-out
    test set (and the golden set) against the champion before it counts: ``rejected``
    otherwise, with the reasons in ``error`` and the metrics in ``evaluation``; like a
    failure, it backs off and tries again later, on more data. The data set is then split
    (by default 90/5/5) unless its config already is.
    """

    def __init__(
        self,
        usage_logger: UsageLogger | UsageDatabase,
        trigger_config: TriggerConfig | None = None,
        generator_config: DataGeneratorConfig | None = None,
        output_dir: str | Path = DEFAULT_OUTPUT_DIR,
        *,
        clock: Clock = utc_now,
        eval_fn: EvalFn | None = None,
        evaluation: EvaluationRule | None = None,
    ) -> None:
        self.usage_logger = usage_logger
        config = trigger_config if trigger_config is not None else TriggerConfig()
        # the data set's own filters: by default the generator's, at the trigger's quality
        dataset = generator_config or DataGeneratorConfig(
            min_quality_score=config.min_quality_score
        )
        if eval_fn is not None and dataset.split is None:
            dataset = replace(dataset, split=DEFAULT_EVALUATION_SPLIT)
        self.eval_fn = eval_fn
        self.evaluation = evaluation if evaluation is not None else EvaluationRule()
        self.trigger = RetrainTrigger(usage_logger, config, generator_config=dataset, clock=clock)
        self.generator = TrainingDataGenerator(usage_logger, self.trigger.generator_config)
        self.output_dir = Path(output_dir).expanduser()
        self._clock = clock

    @property
    def trigger_config(self) -> TriggerConfig:
        return self.trigger.config

    def check_and_retrain(
        self,
        train_fn: TrainFn | None = None,
        *,
        force: bool = False,
        reason: str = "Manual trigger",
        champion_path: str | None = None,
    ) -> dict[str, Any] | None:
        result = self.trigger.force_trigger(reason) if force else self.trigger.check_triggers()
        if not result.triggered:
            log.debug("no retrain: %s", result.reason)
            return None
        return self.retrain(result, train_fn, champion_path=champion_path)

    def retrain(
        self,
        result: TriggerResult,
        train_fn: TrainFn | None,
        *,
        champion_path: str | None = None,
    ) -> dict[str, Any]:
        now = self._clock()
        log.info("retraining (%s): %s", result.trigger_type, result.reason)
        path = self.output_dir / f"retrain_{now.strftime('%Y%m%dT%H%M%S')}Z.jsonl"
        generation = self.generator.generate(path, since=self.trigger.state.last_retrain)
        outcome: dict[str, Any] = {
            "trigger": {
                "type": None if result.trigger_type is None else result.trigger_type.value,
                "reason": result.reason,
                "metrics": result.metrics,
            },
            "generation": generation.to_dict(),
            "timestamp": format_timestamp(now),
        }
        too_little = core.too_little_data(self.trigger_config, generation.final_count)
        if too_little is not None:
            return self._failed(outcome, too_little)
        if train_fn is None:
            self.trigger.mark_retrain_completed()
            return outcome | {"status": "data_ready"}
        try:
            training = train_fn(generation.output_path)
        except Exception as exc:  # the user's trainer failed: record it, back off
            log.warning("train_fn failed: %s: %s", type(exc).__name__, exc)
            log.debug("train_fn failed", exc_info=True)
            return self._failed(outcome, f"{type(exc).__name__}: {exc}")
        if not isinstance(training, dict):
            return self._failed(outcome, f"train_fn returned {type(training).__name__}, not a dict")
        outcome["training"] = training
        if self.eval_fn is not None:
            try:
                verdict = self._evaluate(generation, training, champion_path)
            except Exception as exc:  # the user's evaluator failed: no verdict, back off
                log.warning("eval_fn failed: %s: %s", type(exc).__name__, exc)
                log.debug("eval_fn failed", exc_info=True)
                return self._failed(outcome, f"evaluation failed: {type(exc).__name__}: {exc}")
            outcome["evaluation"] = verdict
            if not verdict["passed"]:
                self.trigger.mark_retrain_failed()
                why = "; ".join(verdict["reasons"])
                log.warning("candidate rejected by the evaluation gate: %s", why)
                return outcome | {"status": "rejected", "error": f"evaluation gate: {why}"}
        self.trigger.mark_retrain_completed()
        return outcome | {"status": "completed"}

    def _evaluate(
        self, generation: GenerationResult, training: dict[str, Any], champion_path: str | None
    ) -> dict[str, Any]:
        """The candidate and the champion measured on the same held-out sets, judged."""
        assert self.eval_fn is not None
        model_path = training.get("model_path")
        if not isinstance(model_path, str | Path) or not str(model_path):
            raise ValueError("train_fn reported no model_path to evaluate")
        test_path = (generation.split_paths or {}).get("test")
        golden = self.generator.config.golden_path
        golden_path = None if golden is None else str(golden)
        candidate = dict(self.eval_fn(str(model_path), test_path, golden_path))
        champion = (
            None if not champion_path else dict(self.eval_fn(champion_path, test_path, golden_path))
        )
        verdict = judge_evaluation(self.evaluation, candidate, champion)
        return verdict.to_dict() | {"metrics": candidate, "champion": champion}

    def _failed(self, outcome: dict[str, Any], error: str) -> dict[str, Any]:
        self.trigger.mark_retrain_failed()
        log.warning("retrain failed: %s", error)
        return outcome | {"status": "failed", "error": error}
