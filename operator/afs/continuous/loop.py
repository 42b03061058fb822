"""The continuous-learning loop (the seed's ``ContinuousLearningLoop``).

One iteration: make sure there is a champion; judge the running A/B test, promoting or
rolling back when the evidence says so; then, if no test is running, check the triggers,
retrain when one fires and deploy the result as the new challenger. One test at a time: a
retrain never replaces a challenger whose test has not ended (a manual trigger does).
Status is written atomically to ``loop_status.json``.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from afs.continuous.ab_test import ENDING_ACTIONS, ABTestManager, ModelVersion
from afs.continuous.atomic import atomic_file
from afs.continuous.config import LoopConfig
from afs.continuous.core.evaluation import EvaluationRule
from afs.continuous.errors import ContinuousError
from afs.continuous.logger import UsageLogger
from afs.continuous.timeutil import Clock, format_timestamp, utc_now
from afs.continuous.training import run_train_command
from afs.continuous.trigger import AutoRetrainer, EvalFn, RetrainTrigger, TrainFn

log = logging.getLogger(__name__)

STATUS_FILE = "loop_status.json"

__all__ = ["ContinuousLearningLoop", "LoopConfig", "LoopStatus"]


@dataclass
class LoopStatus:
    running: bool = False
    last_check: str | None = None
    last_retrain: str | None = None
    total_retrains: int = 0
    champion_model: str | None = None
    challenger_model: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopStatus:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def read_status(output_dir: Path) -> LoopStatus:
    path = output_dir / STATUS_FILE
    if not path.exists():
        return LoopStatus()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ContinuousError(
            f"{path}: corrupt loop status ({exc}); remove it to start afresh"
        ) from exc
    if not isinstance(data, dict):
        raise ContinuousError(
            f"{path}: corrupt loop status (a JSON {type(data).__name__}, not an object); "
            "remove it to start afresh"
        )
    return LoopStatus.from_dict(data)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, default=str)


class ContinuousLearningLoop:
    """Orchestrates logging → triggers → retraining → A/B test → promotion."""

    def __init__(
        self,
        config: LoopConfig | None = None,
        *,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
        eval_fn: EvalFn | None = None,
        evaluation: EvaluationRule | None = None,
    ) -> None:
        """``eval_fn`` and ``evaluation``: the offline gate a trained model must pass
        (see :class:`~afs.continuous.trigger.AutoRetrainer`) before it becomes the
        challenger; a rejected one never meets users."""
        self.config = config if config is not None else LoopConfig()
        self._clock = clock
        self.output_dir = self.config.output_path
        self.usage_logger = UsageLogger(self.config.database, clock=clock)
        self.auto_retrainer = AutoRetrainer(
            self.usage_logger,
            self.config.trigger_config,
            self.config.generator_config,
            self.output_dir,
            clock=clock,
            eval_fn=eval_fn,
            evaluation=evaluation,
        )
        self.ab_test_manager = ABTestManager(
            self.usage_logger,
            self.config.ab_test_config,
            output_dir=self.output_dir,
            clock=clock,
            rng=rng,
        )
        self.status = read_status(self.output_dir)
        self.status.running = False
        self._stop = threading.Event()

    # --- seed conveniences --------------------------------------------------------

    @property
    def trigger(self) -> RetrainTrigger:
        return self.auto_retrainer.trigger

    @property
    def ab_manager(self) -> ABTestManager:
        return self.ab_test_manager

    def log_usage(self, query: str, response: str, model: str, **fields: Any) -> str:
        return self.usage_logger.log(query, response, model, **fields)

    def record_feedback(
        self,
        record_id: str,
        feedback: int,
        feedback_text: str | None = None,
        correction: str | dict[str, Any] | None = None,
    ) -> bool:
        return self.usage_logger.record_feedback(record_id, feedback, feedback_text, correction)

    def get_statistics(self, since: Any = None) -> dict[str, Any]:
        return self.usage_logger.get_statistics(since)

    # --- one iteration ------------------------------------------------------------

    def run_iteration(
        self,
        train_fn: TrainFn | None = None,
        *,
        force: bool = False,
        reason: str = "Manual trigger",
    ) -> dict[str, Any]:
        """Judge any running A/B test, then retrain if due (or if ``force``)."""
        now = self._clock()
        result: dict[str, Any] = {
            "timestamp": format_timestamp(now),
            "retrain_triggered": False,
            "ab_test_update": None,
        }
        try:
            self.ensure_champion()
            if self.config.enable_ab_testing:
                self._judge(result)
            challenger = self.ab_test_manager.challenger
            if self.config.enable_ab_testing and challenger is not None and not force:
                # one test at a time: a new challenger would restart the running test
                result["retrain_skipped"] = f"A/B test of {challenger.name} still running"
            else:
                champion = self.ab_test_manager.champion
                retrain = self.auto_retrainer.check_and_retrain(
                    self._trainer(train_fn), force=force, reason=reason,
                    champion_path=champion.path if champion is not None else None,
                )  # fmt: skip
                if retrain is not None:
                    result["retrain_triggered"] = True
                    result["retrain"] = retrain
                    self._after_retrain(retrain, result)
        except Exception as exc:
            self._record_error("iteration", exc)
            raise
        finally:
            self.status.last_check = format_timestamp(now)
            self._sync_models()
            self._save_status()
        return result

    def _trainer(self, train_fn: TrainFn | None) -> TrainFn | None:
        if train_fn is not None or self.config.train_command is None:
            return train_fn
        command = self.config.train_command

        def run(data_path: Path) -> dict[str, Any]:
            run_dir = self.config.models_path / f"run-{self.status.total_retrains + 1}"
            return run_train_command(
                command,
                data_path=data_path,
                output_dir=run_dir,
                timeout_s=self.config.train_timeout_seconds,
            )

        return run

    def ensure_champion(self) -> None:
        """The first champion: ``champion_model`` if configured, else the busiest model."""
        self.ab_test_manager.ensure_champion(self.config.champion_model, self.config.champion_path)

    def _after_retrain(self, retrain: dict[str, Any], result: dict[str, Any]) -> None:
        if retrain["status"] == "failed":
            self._record_error("retrain", RuntimeError(retrain.get("error", "failed")))
            return
        if retrain["status"] == "rejected":  # the offline gate: it never meets users
            training = retrain.get("training") or {}
            result["challenger_rejected"] = {
                "name": training.get("model_name"), "reasons": retrain["evaluation"]["reasons"],
            }  # fmt: skip
            return
        if retrain["status"] not in ("completed", "data_ready"):
            return
        # a data set handed off (no trainer) counts, as it does for the trigger's cooldown
        self.status.total_retrains += 1
        self.status.last_retrain = retrain["timestamp"]
        if retrain["status"] == "data_ready":
            return
        name, path = self._model_identity(retrain.get("training") or {})
        dataset_id = (retrain.get("generation") or {}).get("dataset_id")
        if dataset_id is not None:  # lineage: what trained on the data set
            self.auto_retrainer.generator.store.label_dataset(dataset_id, name)
        manager = self.ab_test_manager
        if manager.champion is None:
            result["champion_promoted"] = manager.set_champion(name, path).name
        elif self.config.enable_ab_testing:
            version = manager.deploy_challenger(name, path)
            result["challenger_deployed"] = version.to_dict()
        elif self.config.enable_auto_promotion:
            result["champion_promoted"] = manager.set_champion(name, path).name

    def _model_identity(self, training: dict[str, Any]) -> tuple[str, str]:
        name = training.get("model_name")
        if not isinstance(name, str) or not name.strip():
            champion = self.ab_test_manager.champion
            base = champion.name.split("-r")[0] if champion is not None else "model"
            name = f"{base}-r{self.status.total_retrains}"
        path = training.get("model_path", "")
        return name, str(path)

    def _judge(self, result: dict[str, Any]) -> None:
        manager = self.ab_test_manager
        comparison = manager.compare_models()
        if comparison is None:
            return
        result["ab_comparison"] = comparison.to_dict()
        result["ab_test_update"] = {
            "winner": comparison.winner,
            "action": comparison.action,
            "verdict": comparison.verdict,
            "improvement": comparison.improvement,
            "reason": comparison.reason,
        }
        if not self.config.enable_auto_promotion:
            return
        if comparison.action == "promote":
            result["champion_promoted"] = manager.promote_challenger().name
        elif comparison.action in ENDING_ACTIONS:
            result["challenger_rolled_back"] = manager.rollback_challenger().name

    # --- running ------------------------------------------------------------------

    def run_loop(
        self,
        train_fn: TrainFn | None = None,
        max_iterations: int | None = None,
        *,
        on_iteration: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Iterate every ``check_interval_seconds`` until :meth:`stop` or the limit.

        An iteration that raises is recorded in the status and the loop goes on.
        """
        self._stop.clear()
        self.status.running = True
        self._save_status()
        done = 0
        try:
            while not self._stop.is_set():
                try:
                    outcome = self.run_iteration(train_fn)
                except Exception:
                    log.exception("iteration failed; continuing")
                else:
                    if on_iteration is not None:
                        on_iteration(outcome)
                done += 1
                if max_iterations is not None and done >= max_iterations:
                    break
                self._stop.wait(self.config.check_interval_seconds)
        finally:
            self.status.running = False
            self._save_status()

    def stop(self) -> None:
        """Stop :meth:`run_loop` now, even in the middle of its sleep."""
        self._stop.set()

    # --- status -------------------------------------------------------------------

    def _record_error(self, where: str, exc: BaseException) -> None:
        self.status.errors.append(
            {"timestamp": format_timestamp(self._clock()), "where": where, "error": str(exc)}
        )
        del self.status.errors[: -self.config.max_errors]

    def _sync_models(self) -> None:
        manager = self.ab_test_manager
        self.status.champion_model = None if manager.champion is None else manager.champion.name
        self.status.challenger_model = (
            None if manager.challenger is None else manager.challenger.name
        )

    def _save_status(self) -> None:
        write_json_atomically(self.output_dir / STATUS_FILE, self.status.to_dict())

    def get_status_summary(self) -> dict[str, Any]:
        self._sync_models()
        return {
            "status": self.status.to_dict(),
            "usage_stats": self.usage_logger.get_statistics(),
            "ab_test": self.ab_test_manager.get_status(),
            "trigger_state": self.trigger.state.to_dict(),
        }

    def route_request(self, key: str | None = None) -> ModelVersion | None:
        return self.ab_test_manager.route_request(key)

    def close(self) -> None:
        self.usage_logger.close()
