"""The A/B verdict, case by case, and its agreement with the vectorised simulation."""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from afs.continuous.core.decision import DecisionSettings, Epoch, VerdictKind, judge
from afs.continuous.core.unit_statistics import RatioSums, UnitStatistics
from afs.continuous.store import UsageStatistics
from tests.docs_examples import ROOT


def _arm(
    n: int, *, quality: float = 0.7, sd: float = 0.15, rated_share: float = 0.1,
    negative: float = 0.3, latency_ms: float = 200.0, errors: float = 0.05,
) -> UsageStatistics:  # fmt: skip
    """Sufficient statistics with exactly the given means and spreads."""
    rated = int(n * rated_share)
    log_mean, log_sd = math.log(latency_ms), 0.5
    return UsageStatistics(
        count=n,
        scored=n,
        quality_sum=quality * n,
        quality_sq_sum=n * (quality**2) + (n - 1) * sd**2,
        latency_sum=latency_ms * n,
        log_latency_count=n,
        log_latency_sum=log_mean * n,
        log_latency_sq_sum=n * log_mean**2 + (n - 1) * log_sd**2,
        with_feedback=rated,
        positive=rated - int(rated * negative),
        negative=int(rated * negative),
        errors=int(n * errors),
    )


def _epoch(champion: UsageStatistics, challenger: UsageStatistics, share: float = 0.1) -> Epoch:
    return Epoch(hours=48.0, challenger_share=share, champion=champion, challenger=challenger)


SETTINGS = DecisionSettings(planned_challenger_requests=336)


@pytest.mark.parametrize(
    ("champion", "challenger", "kind", "reason"),
    [
        (_arm(900), _arm(100), VerdictKind.CONTINUE, "not enough data"),
        (_arm(3000), _arm(600), VerdictKind.HALT, "sample-ratio mismatch"),
        (_arm(3000), _arm(330, quality=0.78), VerdictKind.PROMOTE, "quality proven higher"),
        (_arm(3000), _arm(330, quality=0.60), VerdictKind.ROLLBACK, "quality proven lower"),
        (_arm(3000), _arm(330, latency_ms=260.0), VerdictKind.ROLLBACK, "latency proven higher"),
        (_arm(3000), _arm(330, errors=0.15), VerdictKind.ROLLBACK, "error rate proven higher"),
        (_arm(3000), _arm(330, rated_share=0.5, negative=0.6), VerdictKind.ROLLBACK,
         "negative feedback proven higher"),
        (_arm(3000), _arm(330, quality=0.705), VerdictKind.CONTINUE, "no decision yet"),
    ],
)  # fmt: skip
def test_verdicts(
    champion: UsageStatistics, challenger: UsageStatistics, kind: VerdictKind, reason: str
) -> None:
    verdict = judge([_epoch(champion, challenger)], SETTINGS, elapsed_hours=48)
    assert verdict.kind is kind, verdict.reasons
    assert reason in " ".join(verdict.reasons)


def test_every_number_is_reported() -> None:
    verdict = judge([_epoch(_arm(3000), _arm(330, quality=0.78))], SETTINGS, elapsed_hours=48)
    metrics = verdict.metrics
    assert metrics["arms"]["challenger"]["requests"] == 330
    assert metrics["quality"]["lower"] > 0 and metrics["quality"]["test"] == "mean difference"
    assert metrics["latency"]["ratio"] == pytest.approx(1.0)
    assert {"alpha", "guardrail_alpha", "error_alpha", "thresholds", "sample_ratio", "errors"} <= (
        set(metrics)
    )
    assert (metrics["guardrail_alpha"], metrics["error_alpha"]) == (0.0125, 0.025)
    assert verdict.to_dict()["verdict"] == "PROMOTE"


def test_excess_errors_roll_back_before_the_minimum_data() -> None:
    """The error e-value is exact at any sample size: it does not wait for the intervals'
    minimum (here 150 challenger requests of 200)."""
    verdict = judge([_epoch(_arm(1350), _arm(150, errors=0.2))], SETTINGS, elapsed_hours=10)
    assert verdict.kind is VerdictKind.ROLLBACK
    assert "error rate proven higher: 30/150" in verdict.reasons[0]
    few = judge([_epoch(_arm(1350), _arm(150, errors=0.07))], SETTINGS, elapsed_hours=10)
    assert few.kind is VerdictKind.CONTINUE and "not enough data" in few.reasons[0]


def test_max_duration_ends_an_undecided_test_as_inconclusive() -> None:
    epochs = [_epoch(_arm(3000), _arm(330, quality=0.705))]
    assert judge(epochs, SETTINGS, elapsed_hours=200).kind is VerdictKind.INCONCLUSIVE
    few = [_epoch(_arm(450), _arm(50))]
    assert judge(few, SETTINGS, elapsed_hours=200).kind is VerdictKind.INCONCLUSIVE


def test_strict_guardrails_and_minimum_duration_can_hold_a_promotion() -> None:
    epochs = [_epoch(_arm(3000), _arm(330, quality=0.78))]
    strict = DecisionSettings(planned_challenger_requests=336, strict_guardrails=True)
    verdict = judge(epochs, strict, elapsed_hours=48)
    assert verdict.kind is VerdictKind.CONTINUE
    assert "not yet shown within" in verdict.reasons[0]
    patient = DecisionSettings(planned_challenger_requests=336, min_duration_hours=72)
    assert judge(epochs, patient, elapsed_hours=48).kind is VerdictKind.CONTINUE


def test_epochs_with_a_shared_drift_do_not_fake_a_difference() -> None:
    """Before a ramp both arms score 0.74, after it both score 0.70: pooled over time the
    challenger (mostly after the ramp) would look worse; per epoch there is no difference."""
    early = _epoch(_arm(2700, quality=0.74), _arm(300, quality=0.74), share=0.1)
    late = _epoch(_arm(1500, quality=0.70), _arm(1500, quality=0.70), share=0.5)
    verdict = judge([early, late], SETTINGS, elapsed_hours=96)
    assert verdict.kind is VerdictKind.CONTINUE
    assert verdict.metrics["quality"]["estimate"] == pytest.approx(0.0, abs=1e-12)


def _simulation() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ab_simulation", ROOT / "bench/ab_simulation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ab_simulation"] = module
    spec.loader.exec_module(module)
    return module


STRICT = replace(SETTINGS, strict_guardrails=True)


def _random_epochs(rng: np.random.Generator, reps: int) -> list[Any]:
    """Two epochs (10% and 50% to the challenger) of per-arm sums for ``reps`` tests: the
    challenger differs from the champion by random amounts on every metric, so that
    promotions, rollbacks, blocked promotions and undecided tests all occur."""
    changes = {
        "quality": rng.uniform(-0.02, 0.08, size=reps),
        "log_latency": np.log(rng.uniform(0.97, 1.15, size=reps)),
        "negative": rng.uniform(-0.05, 0.06, size=reps),
        "errors": rng.uniform(-0.01, 0.02, size=reps),
    }
    epochs = []
    for share in (0.1, 0.5):
        quality = rng.uniform(0.6, 0.8, size=reps)
        log_latency = np.log(rng.uniform(150, 260, size=reps))
        negative = rng.uniform(0.1, 0.5, size=reps)
        errors = rng.uniform(0.02, 0.08, size=reps)
        total = rng.integers(1500, 15000, size=reps)
        to_challenger = rng.binomial(total, share).astype(float)  # as planned: no SRM
        arms = []
        for challenger in (0.0, 1.0):  # how much of the change this arm has
            n = to_challenger if challenger else total - to_challenger
            mean = quality + challenger * changes["quality"]
            log_mean = log_latency + challenger * changes["log_latency"]
            rated = np.floor(n * rng.uniform(0.05, 0.2, size=reps))
            arms.append({
                "n": n, "q": mean * n, "q2": n * mean**2 + (n - 1) * 0.0225,
                "ll": log_mean * n, "ll2": n * log_mean**2 + (n - 1) * 0.25, "lat": n * 200.0,
                "rated": rated,
                "neg": np.floor(rated * (negative + challenger * changes["negative"])),
                "pos": rated * 0, "err": np.floor(n * (errors + challenger * changes["errors"])),
            })  # fmt: skip
        epochs.append((rng.uniform(5, 50), share, arms[0], arms[1]))
    return epochs


@pytest.mark.parametrize("settings", [SETTINGS, STRICT], ids=["default", "strict-guardrails"])
def test_the_vectorised_simulation_engine_agrees_with_judge(settings: DecisionSettings) -> None:
    sim = _simulation()
    reps = 300
    arrays = _random_epochs(np.random.default_rng(3), reps)
    promote, rollback = sim.engine_decisions(arrays, settings)
    # every outcome occurs, so agreement means something
    assert promote.sum() > 0 and rollback.sum() > 0 and (promote | rollback).sum() < reps
    if settings.strict_guardrails:  # and the margins do block some promotions
        relaxed, _ = sim.engine_decisions(arrays, SETTINGS)
        assert (relaxed & ~promote).any()
    for i in range(reps):
        epochs = [
            Epoch(hours, share, _from_arrays(a, i), _from_arrays(b, i))
            for hours, share, a, b in arrays
        ]
        kind = judge(epochs, settings, elapsed_hours=60).kind
        assert promote[i] == (kind is VerdictKind.PROMOTE), i
        assert rollback[i] == (kind in (VerdictKind.ROLLBACK, VerdictKind.HALT)), i


def _from_arrays(arm: dict[str, np.ndarray], i: int) -> UsageStatistics:
    return UsageStatistics(
        count=int(arm["n"][i]), scored=int(arm["n"][i]), quality_sum=float(arm["q"][i]),
        quality_sq_sum=float(arm["q2"][i]), latency_sum=float(arm["lat"][i]),
        log_latency_count=int(arm["n"][i]), log_latency_sum=float(arm["ll"][i]),
        log_latency_sq_sum=float(arm["ll2"][i]), with_feedback=int(arm["rated"][i]),
        negative=int(arm["neg"][i]), positive=int(arm["pos"][i]), errors=int(arm["err"][i]),
    )  # fmt: skip


def test_a_small_aa_simulation_rarely_promotes() -> None:
    sim = _simulation()
    outcome = sim.simulate(sim.SCENARIOS[0], 35.0, 150, np.random.default_rng(11))
    engine = outcome["sequential engine"]
    assert (engine.kind == 1).mean() <= 0.05  # loose: the benchmark measures ~1%
    assert (outcome["t-test every look"].kind == 1).mean() > 0.15  # peeking does fool a t-test


def test_with_sticky_users_only_the_unit_level_engine_keeps_its_promise() -> None:
    """S6 of the benchmark, small: an A/A test routed by user. The request-level engine
    promotes now and then and halts on a split that is fine by users; with the user as
    the unit it does neither."""
    sim = _simulation()
    outcome = sim.simulate_sticky(350.0, 60, np.random.default_rng(8))
    by_request, by_unit = outcome["engine, unit: request"], outcome["engine, unit: key"]
    assert (by_request.kind != 0).mean() > 0.3
    assert (by_unit.kind == 1).mean() <= 0.05 and (by_unit.kind == -1).mean() <= 0.05


def test_the_vectorised_unit_engine_agrees_with_judge() -> None:
    """The benchmark's user-level engine is judge with unit='key', replication by
    replication, on sticky traffic at hour 40 with a better and a worse challenger."""
    sim = _simulation()
    settings = replace(SETTINGS, unit="key", planned_challenger_share=0.1)
    outcomes = []
    for lift in (0.05, -0.06):
        per_hour, to_b = sim._sticky_hours(np.random.default_rng(12), 80, 600, lift=lift)
        cumulative = {k: np.cumsum(v, axis=2) for k, v in per_hour.items()}
        masks = {"a": ~to_b, "b": to_b}
        sums = {arm: sim._unit_sums(cumulative, mask, 40) for arm, mask in masks.items()}
        promote, rollback = sim.unit_engine_decisions(sums["a"], sums["b"], settings)
        arms = {
            arm: {k: (v[:, :, 40] * mask).sum(1) for k, v in cumulative.items()}
            for arm, mask in masks.items()
        }
        for i in range(promote.size):
            epoch = Epoch(
                41.0, 0.1, _from_arrays(arms["a"], i), _from_arrays(arms["b"], i),
                champion_units=_units(sums["a"], i), challenger_units=_units(sums["b"], i),
            )  # fmt: skip
            kind = judge([epoch], settings, elapsed_hours=41).kind
            assert promote[i] == (kind is VerdictKind.PROMOTE), (lift, i)
            assert rollback[i] == (kind in (VerdictKind.ROLLBACK, VerdictKind.HALT)), (lift, i)
            outcomes.append(kind)
    assert {VerdictKind.PROMOTE, VerdictKind.ROLLBACK, VerdictKind.CONTINUE} <= set(outcomes)


def _units(arm: dict[str, np.ndarray], i: int) -> UnitStatistics:
    parts = ("n", "y", "y2", "yn", "n2")
    metrics = {"quality": "q", "log_latency": "ll", "negative": "neg", "errors": "err"}
    return UnitStatistics(int(arm["m"][i]), {
        name: RatioSums(*(float(arm[f"{key}:{part}"][i]) for part in parts))
        for name, key in metrics.items()
    })  # fmt: skip
