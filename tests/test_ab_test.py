"""ABTestManager with real usage records and a real state file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from afs.continuous import UsageLogger
from afs.continuous.ab_test import (
    ABTestConfig,
    ABTestManager,
    ModelStatus,
    ModelVersion,
    TrafficSplit,
)
from afs.continuous.errors import ContinuousError, InvalidFieldError
from tests.conftest import FakeClock

FAST = ABTestConfig(
    min_samples_per_version=50,
    min_duration_hours=2,
    evaluation_window_hours=24,
    min_requests_per_arm=50,
    min_feedback_per_arm=10,
    planned_challenger_requests=200,
)
WEIGHTED = ABTestConfig(
    decision_method="weighted",
    min_samples_per_version=50,
    min_duration_hours=2,
    evaluation_window_hours=24,
)


def _serve(
    logger: UsageLogger, manager: ABTestManager, *, n: int, quality: dict[str, float], seed: int = 1
) -> None:
    rng = random.Random(seed)
    for i in range(n):
        version = manager.route_request(key=f"user-{seed}-{i}")
        assert version is not None
        q = min(1.0, max(0.0, rng.gauss(quality[version.name], 0.05)))
        logger.log(
            f"q{i}",
            f"a{i}",
            version.name,
            latency_ms=100,
            quality_score=q,
            user_feedback=1 if q > 0.6 else -1,
        )


@pytest.fixture
def manager(logger: UsageLogger, tmp_path: Path, clock: FakeClock) -> ABTestManager:
    m = ABTestManager(logger, FAST, output_dir=tmp_path / "out", clock=clock, rng=random.Random(5))
    m.set_champion("nayru-v1", "models/v1")
    return m


def test_better_challenger_is_promoted_after_the_minimum_duration(
    logger: UsageLogger, manager: ABTestManager, clock: FakeClock
) -> None:
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.5)
    _serve(logger, manager, n=400, quality={"nayru-v1": 0.6, "nayru-v2": 0.8})
    result = manager.compare_models()
    assert result is not None and result.action == "continue"
    assert "quality proven higher, but test younger than min_duration_hours" in result.reason
    assert result.evidence["quality"]["lower"] > 0
    assert not manager.auto_promote_if_ready()  # too early
    clock.advance(hours=3)
    assert manager.auto_promote_if_ready()
    assert manager.champion is not None and manager.champion.name == "nayru-v2"
    assert manager.challenger is None
    assert [v.name for v in manager.history] == ["nayru-v1"]
    assert manager.history[0].status is ModelStatus.RETIRED


def test_worse_challenger_is_rolled_back_not_promoted(
    logger: UsageLogger, manager: ABTestManager, clock: FakeClock
) -> None:
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.5)
    _serve(logger, manager, n=400, quality={"nayru-v1": 0.8, "nayru-v2": 0.6})
    clock.advance(hours=3)
    assert not manager.auto_promote_if_ready()
    assert manager.champion is not None and manager.champion.name == "nayru-v1"
    assert manager.challenger is None and manager.history[-1].name == "nayru-v2"


def test_a_split_off_plan_halts_the_test_even_for_a_better_challenger(
    logger: UsageLogger, manager: ABTestManager, clock: FakeClock
) -> None:
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.1)
    rng = random.Random(3)
    for i in range(600):  # something else sends half the traffic to the challenger
        name = "nayru-v2" if i % 2 else "nayru-v1"
        q = min(1.0, max(0.0, rng.gauss(0.8 if i % 2 else 0.6, 0.05)))
        logger.log(f"q{i}", f"a{i}", name, latency_ms=100, quality_score=q, user_feedback=1)
    clock.advance(hours=3)
    result = manager.compare_models()
    assert result is not None
    assert (result.verdict, result.action) == ("HALT", "halt")
    assert "sample-ratio mismatch" in result.reason
    assert not manager.auto_promote_if_ready()
    assert manager.champion is not None and manager.champion.name == "nayru-v1"
    assert manager.challenger is None


def test_metrics_are_per_version_not_global(logger: UsageLogger, manager: ABTestManager) -> None:
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.5)
    _serve(logger, manager, n=300, quality={"nayru-v1": 0.5, "nayru-v2": 0.9})
    assert manager.champion is not None and manager.challenger is not None
    champion = manager.get_model_metrics(manager.champion)
    challenger = manager.get_model_metrics(manager.challenger)
    assert champion["avg_quality_score"] == pytest.approx(0.5, abs=0.02)
    assert challenger["avg_quality_score"] == pytest.approx(0.9, abs=0.02)
    assert champion["count"] + challenger["count"] == 300


def test_too_little_data_is_inconclusive(
    logger: UsageLogger, manager: ABTestManager, clock: FakeClock
) -> None:
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.1)
    _serve(logger, manager, n=100, quality={"nayru-v1": 0.5, "nayru-v2": 0.9})
    clock.advance(hours=10)
    result = manager.compare_models()
    assert result is not None and result.winner == "inconclusive"
    assert result.verdict == "CONTINUE"
    assert result.reason.startswith("not enough data")
    assert not manager.auto_promote_if_ready()
    assert manager.challenger is not None


def test_routing_follows_weights_and_keys_are_sticky(manager: ABTestManager) -> None:
    assert manager.route_request() is manager.champion  # no test: always the champion
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.2)
    names = [v.name for v in (manager.route_request(key=f"k{i}") for i in range(5000)) if v]
    assert 0.17 < names.count("nayru-v2") / 5000 < 0.23
    again = [v.name for v in (manager.route_request(key=f"k{i}") for i in range(5000)) if v]
    assert names == again
    random_names = [v.name for v in (manager.route_request() for _ in range(5000)) if v]
    assert 0.17 < random_names.count("nayru-v2") / 5000 < 0.23


def test_another_process_sees_a_promotion(
    logger: UsageLogger, manager: ABTestManager, clock: FakeClock
) -> None:
    manager.deploy_challenger("nayru-v2", "models/v2")
    server = ABTestManager(logger, FAST, state_file=manager.state_file, clock=clock)
    assert server.challenger is not None and server.challenger.name == "nayru-v2"
    manager.promote_challenger()
    version = server.route_request(key="anyone")
    assert version is not None and version.name == "nayru-v2"


def test_state_file_is_json_in_the_configured_directory(
    manager: ABTestManager, tmp_path: Path, private_home: Path
) -> None:
    manager.deploy_challenger("nayru-v2", "models/v2")
    assert manager.state_file == tmp_path / "out" / "ab_test_state.json"
    data = json.loads(manager.state_file.read_text())
    assert data["challenger"]["name"] == "nayru-v2"
    assert data["traffic_split"] == {"champion_weight": 0.9, "challenger_weight": 0.1}
    assert not (private_home / ".context").exists()
    assert [p.name for p in manager.state_file.parent.iterdir() if p.suffix == ".tmp"] == []


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan"), "0.5", True])
def test_weights_outside_0_1_are_rejected(manager: ABTestManager, weight: object) -> None:
    with pytest.raises(InvalidFieldError):
        manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=weight)  # type: ignore[arg-type]
    assert manager.challenger is None
    with pytest.raises(InvalidFieldError):
        TrafficSplit(0.5, 0.6)


def test_challenger_needs_a_champion(logger: UsageLogger, tmp_path: Path) -> None:
    fresh = ABTestManager(logger, state_file=tmp_path / "s.json")
    with pytest.raises(ContinuousError, match="set_champion"):
        fresh.deploy_challenger("v2", "p")  # nothing logged: no champion to infer


def test_a_new_challenger_retires_the_previous_one(manager: ABTestManager) -> None:
    manager.deploy_challenger("nayru-v2", "models/v2")
    manager.deploy_challenger("nayru-v3", "models/v3")
    assert manager.challenger is not None and manager.challenger.name == "nayru-v3"
    assert [v.name for v in manager.history] == ["nayru-v2"]


def test_model_version_round_trips() -> None:
    version = ModelVersion("id1", "nayru-v2", "p", ModelStatus.CHALLENGER, 0.1, metrics={"a": 1})
    assert ModelVersion.from_dict(version.to_dict()) == version


def test_config_conveniences() -> None:
    config = ABTestConfig(initial_challenger_traffic=0.1, min_duration_hours=48)
    assert (config.traffic_split_percent, config.duration_hours) == (10.0, 48)
    config.traffic_split_percent = 25
    config.duration_hours = 12
    assert (config.initial_challenger_traffic, config.min_duration_hours) == (0.25, 12)


def test_the_seeds_weighted_rule_is_still_available(
    logger: UsageLogger, tmp_path: Path, clock: FakeClock
) -> None:
    manager = ABTestManager(logger, WEIGHTED, output_dir=tmp_path / "w", clock=clock)
    manager.set_champion("nayru-v1", "models/v1")
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.5)
    _serve(logger, manager, n=400, quality={"nayru-v1": 0.6, "nayru-v2": 0.8})
    result = manager.compare_models()
    assert result is not None and result.winner == "challenger" and result.action == "continue"
    assert result.verdict is None and result.contributions
    clock.advance(hours=3)
    assert manager.auto_promote_if_ready()


def test_a_lucky_challenger_is_not_promoted(
    logger: UsageLogger, manager: ABTestManager, clock: FakeClock
) -> None:
    """Same true quality, a few lucky hours: the weighted rule's 5% can be crossed by
    chance with little data; the sequential verdict waits for evidence."""
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.5)
    for hour in range(24):
        _serve(logger, manager, n=40, quality={"nayru-v1": 0.7, "nayru-v2": 0.7}, seed=hour)
        clock.advance(hours=1)
        result = manager.compare_models()
        assert result is not None
        assert result.action in ("continue", "end"), result.reason
    assert manager.challenger is not None


def test_a_traffic_change_starts_a_new_epoch(manager: ABTestManager, clock: FakeClock) -> None:
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.1)
    clock.advance(hours=24)
    manager.set_traffic(0.5)
    assert [e["challenger_share"] for e in manager.epochs] == [0.1, 0.5]
    result = manager.compare_models()
    assert result is not None and result.evidence["epochs"] == 2


def test_thompson_routing_shifts_traffic_but_never_feeds_the_test(
    logger: UsageLogger, tmp_path: Path, clock: FakeClock
) -> None:
    config = ABTestConfig(
        routing="thompson", min_arm_share=0.2, min_requests_per_arm=50, min_feedback_per_arm=10,
        min_duration_hours=0, planned_challenger_requests=200, initial_challenger_traffic=0.5,
    )  # fmt: skip
    manager = ABTestManager(logger, config, output_dir=tmp_path / "b", clock=clock)
    manager.set_champion("nayru-v1", "v1")
    manager.deploy_challenger("nayru-v2", "v2")
    clock.advance(minutes=1)
    _serve(logger, manager, n=200, quality={"nayru-v1": 0.70, "nayru-v2": 0.72}, seed=1)
    clock.advance(hours=1)
    result = manager.compare_models()
    assert result is not None
    assert manager.traffic_split.challenger_weight == 0.8  # capped at 1 - min_arm_share
    assert [e["bandit"] for e in manager.epochs] == [False, True]
    assert result.evidence["epochs"] == 1  # the test saw the fixed-split epoch only


def test_fixed_routing_never_moves_traffic(manager: ABTestManager, logger: UsageLogger) -> None:
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.1)
    _serve(logger, manager, n=400, quality={"nayru-v1": 0.5, "nayru-v2": 0.9})
    manager.compare_models()
    assert manager.traffic_split.challenger_weight == 0.1


def _serve_users(
    logger: UsageLogger, manager: ABTestManager, *, users: int, effect: dict[str, float],
    seed: int = 3,
) -> None:  # fmt: skip
    """Sticky traffic: each user routed by their key, 5-30 requests each, a quality of
    their own around their version's (requests of one user are alike)."""
    rng = random.Random(seed)
    for user in range(users):
        key = f"user-{user}"
        version = manager.route_request(key=key)
        assert version is not None
        own = rng.gauss(effect[version.name], 0.12)
        for i in range(rng.randint(5, 30)):
            q = min(1.0, max(0.0, rng.gauss(own, 0.05)))
            logger.log(f"q{user}-{i}", f"a{user}-{i}", version.name, latency_ms=100,
                       quality_score=q, user_feedback=1 if q > 0.6 else -1,
                       assignment_key=key)  # fmt: skip


def test_with_users_as_the_unit_the_verdict_counts_users(
    logger: UsageLogger, tmp_path: Path, clock: FakeClock
) -> None:
    by_user = ABTestConfig(
        min_samples_per_version=50, min_duration_hours=0, min_requests_per_arm=50,
        min_feedback_per_arm=10, planned_challenger_requests=800, unit="key",
        min_units_per_arm=20,
    )  # fmt: skip
    manager = ABTestManager(logger, by_user, output_dir=tmp_path / "u", clock=clock)
    manager.set_champion("nayru-v1", "models/v1")
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.5)
    _serve_users(logger, manager, users=160, effect={"nayru-v1": 0.6, "nayru-v2": 0.8})
    result = manager.compare_models()
    assert result is not None
    assert result.verdict == "PROMOTE", result.reason
    arms = result.evidence["arms"]
    assert result.evidence["unit"] == "key"
    assert arms["champion"]["units"] + arms["challenger"]["units"] == 160
    assert arms["challenger"]["requests"] > arms["challenger"]["units"]
    assert result.evidence["sample_ratio"]["test"].endswith("(units)")


def test_sticky_traffic_fools_the_request_level_split_test_not_the_user_level_one(
    logger: UsageLogger, tmp_path: Path, clock: FakeClock
) -> None:
    """The same sticky records judged both ways. Users are split 50/50, but heavy users
    make the requests split unevenly: counted by request the split looks broken and the
    test halts; counted by user it is as planned, and the test goes on."""
    from dataclasses import replace

    from afs.continuous.ab_test import measure_epochs
    from afs.continuous.core.decision import EpochWindow, VerdictKind, judge

    config = ABTestConfig(min_requests_per_arm=50, min_feedback_per_arm=10, unit="key")
    manager = ABTestManager(logger, config, output_dir=tmp_path / "u", clock=clock)
    manager.set_champion("nayru-v1", "models/v1")
    manager.deploy_challenger("nayru-v2", "models/v2", traffic_weight=0.5)
    start = clock.now
    _serve_users(logger, manager, users=120, effect={"nayru-v1": 0.7, "nayru-v2": 0.7})
    clock.advance(hours=1)
    window = EpochWindow(start, None, 1.0, 0.5)
    epochs = measure_epochs(
        logger.store, [window], champion="nayru-v1", challenger="nayru-v2", units=True
    )
    settings = config.decision_settings()
    by_request = judge(epochs, replace(settings, unit="request"), elapsed_hours=1)
    by_user = judge(epochs, settings, elapsed_hours=1)
    assert by_request.kind is VerdictKind.HALT and "requests do not match" in by_request.reasons[0]
    assert by_user.kind is VerdictKind.CONTINUE, by_user.reasons
    quality = by_user.metrics["quality"]
    assert quality["lower"] < 0 < quality["upper"]  # an A/A test: no difference claimed


def _running_test(db: Path, out: Path) -> None:
    with UsageLogger(db) as logger:
        manager = ABTestManager(logger, FAST, output_dir=out)
        manager.set_champion("nayru-v1")
        manager.deploy_challenger("nayru-v2", "v2.bin")


def test_the_state_is_bound_to_its_database_and_refused_against_another(tmp_path: Path) -> None:
    """A state file found by a loop's output directory may sit beside another database;
    judging its test by that database's records would be silently wrong."""
    out = tmp_path / "out"
    _running_test(tmp_path / "a.db", out)
    bound = json.loads((out / "ab_test_state.json").read_text())["database"]
    assert bound["name"] == str((tmp_path / "a.db").resolve()) and len(bound["id"]) == 32
    with UsageLogger(tmp_path / "b.db") as other, pytest.raises(ContinuousError) as caught:
        ABTestManager(other, FAST, output_dir=out)
    assert "holds the A/B test of another database" in str(caught.value)
    assert str(tmp_path / "a.db") in str(caught.value) and "b.db" in str(caught.value)


def test_the_binding_follows_a_moved_database_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _running_test(tmp_path / "a.db", out)
    (tmp_path / "a.db").rename(tmp_path / "moved.db")
    with UsageLogger(tmp_path / "moved.db") as logger:
        manager = ABTestManager(logger, FAST, output_dir=out)
        assert manager.challenger is not None and manager.challenger.name == "nayru-v2"


def test_a_state_written_before_binding_is_read_and_bound_at_its_next_change(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    _running_test(tmp_path / "a.db", out)
    state_file = out / "ab_test_state.json"
    state = json.loads(state_file.read_text())
    del state["database"]
    state_file.write_text(json.dumps(state))
    with UsageLogger(tmp_path / "b.db") as logger:
        ABTestManager(logger, FAST, output_dir=out).set_traffic(0.2)
    assert json.loads(state_file.read_text())["database"]["name"].endswith("b.db")
    with UsageLogger(tmp_path / "a.db") as logger, pytest.raises(ContinuousError):
        ABTestManager(logger, FAST, output_dir=out)


@pytest.mark.parametrize("database", [[], "a.db", {"id": "x"}, {"id": 1, "name": "a.db"}], ids=repr)
def test_a_malformed_binding_is_a_corrupt_state(tmp_path: Path, database: object) -> None:
    state_file = tmp_path / "ab_test_state.json"
    state_file.write_text(json.dumps({"version": 1, "database": database}))
    with pytest.raises(ContinuousError, match="corrupt A/B state"):
        ABTestManager(None, FAST, state_file=state_file)
