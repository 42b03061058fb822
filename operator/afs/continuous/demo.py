"""A complete continuous-learning cycle on a laptop, with a real (small) model.

The model is a retrieval assistant for SNES / 65816 questions: it answers with the answer
of the most similar question it was trained on, or admits it does not know. Production
traffic is simulated hour by hour: users ask about 40 topics in varied words, a grader
scores every answer against the reference (token F1), users give thumbs up or down, and
when the assistant fails a human expert answers instead (that exchange is logged too).
The loop retrains on what production taught it and gates each candidate offline first:
on the held-out test split and a golden set (the champion's topics, which must never
break) against the champion. The first training run has a bug that swaps answers between
questions; that candidate is rejected before any user sees it. The next one passes, is
tested against the old one on live traffic, and is promoted only if its own records show
it is better. Held-out accuracy (questions phrased in a way neither model saw) is measured
for both models, so the improvement is checked on data no training ever used.

Run: ``afs-continuous demo`` or ``python examples/continuous_learning_demo.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from afs.continuous.ab_test import ABTestConfig
from afs.continuous.argtypes import whole_number
from afs.continuous.config import DataGeneratorConfig, LoopConfig, TriggerConfig
from afs.continuous.core.evaluation import GOLDEN_PASS_RATE, EvaluationRule, MetricRule
from afs.continuous.errors import ContinuousError, redact_secrets
from afs.continuous.formats import Sample, format_sample, parse_sample
from afs.continuous.logger import UsageLogger
from afs.continuous.loop import ContinuousLearningLoop
from afs.continuous.store import is_postgres_url


def _load_knowledge() -> tuple[tuple[str, str], ...]:
    """(topic as users name it, reference answer) pairs shipped with the package."""
    text = resources.files("afs.continuous").joinpath("demo_knowledge.json").read_text("utf-8")
    return tuple((item["topic"], item["answer"]) for item in json.loads(text))


KNOWLEDGE = _load_knowledge()
TRAIN_TEMPLATES = ("What does {t} do?", "Explain {t}.", "How does {t} work?", "Tell me about {t}.")
HELD_OUT_TEMPLATE = "Could you describe {t} for me?"
_STOP = frozenset(
    ("a", "an", "and", "about", "are", "can", "could", "describe", "do", "does", "explain",
     "for", "how", "i", "in", "is", "it", "me", "of", "on", "please", "tell", "the", "to",
     "what", "work", "works", "you")
)  # fmt: skip
_WORD = re.compile(r"[a-z0-9$#]+")
NOT_SURE = "I'm not sure about that one."


def _tokens(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def token_f1(answer: str, reference: str) -> float:
    """The grader: overlap of answer and reference words, as an F1 score."""
    a, r = _WORD.findall(answer.lower()), _WORD.findall(reference.lower())
    common = sum(min(a.count(w), r.count(w)) for w in set(a))
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


@dataclass
class RetrievalModel:
    """Answers with the reply to the most similar training question (Jaccard on words)."""

    pairs: list[tuple[str, str]]
    threshold: float = 0.3

    def answer(self, query: str) -> str:
        words = _tokens(query)
        best, best_score = NOT_SURE, 0.0
        for question, reply in self.pairs:
            other = _tokens(question)
            union = words | other
            score = len(words & other) / len(union) if union else 0.0
            if score > best_score:
                best, best_score = reply, score
        return best if best_score >= self.threshold else NOT_SURE

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"pairs": self.pairs}), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> RetrievalModel:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls([(q, a) for q, a in data["pairs"]])

    @classmethod
    def train(cls, data_path: str | Path) -> RetrievalModel:
        """Learn from a training-data file of any supported format."""
        pairs = {}
        for line in Path(data_path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                sample = parse_sample(json.loads(line))
                pairs[sample.query] = sample.response
        return cls(sorted(pairs.items()))


def held_out_accuracy(model: RetrievalModel) -> float:
    """Share of topics answered correctly when asked in words no training data used."""
    hits = sum(
        token_f1(model.answer(HELD_OUT_TEMPLATE.format(t=topic)), reference) >= 0.9
        for topic, reference in KNOWLEDGE
    )
    return hits / len(KNOWLEDGE)


class SimulatedClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _trainer(models_dir: Path, *, corrupt_first: bool) -> Callable[[Path], dict[str, Any]]:
    """The training job; with ``corrupt_first``, its first run has a data bug: answers are
    paired with the wrong questions (shifted by one), as a broken join would."""
    runs = 0

    def train(data_path: Path) -> dict[str, Any]:
        nonlocal runs
        runs += 1
        model = RetrievalModel.train(data_path)
        if corrupt_first and runs == 1:
            replies = [reply for _, reply in model.pairs]
            shifted = replies[1:] + replies[:1]
            model = RetrievalModel([(q, r) for (q, _), r in zip(model.pairs, shifted, strict=True)])
        version = len(list(models_dir.glob("nayru-v*.json"))) + 1
        path = models_dir / f"nayru-v{version}.json"
        model.save(path)
        accuracy = held_out_accuracy(model)
        return {
            "model_name": f"nayru-v{version}",
            "model_path": str(path),
            "metrics": {"train_examples": len(model.pairs), "heldout_accuracy": accuracy},
        }

    return train


def accuracy_on(model: RetrievalModel, path: str | None) -> float | None:
    """The share of a data set's questions the model answers with its answer (None for
    a set with no items)."""
    if path is None or not Path(path).exists():
        return None
    samples = [parse_sample(json.loads(line)) for line in Path(path).read_text().splitlines()
               if line.strip()]  # fmt: skip
    if not samples:
        return None
    hits = sum(token_f1(model.answer(s.query), s.response) >= 0.9 for s in samples)
    return hits / len(samples)


def evaluate(model_path: str, test_path: str | None, golden_path: str | None) -> dict[str, Any]:
    """The offline evaluator: accuracy on the held-out test split, and the share of the
    golden set answered right."""
    model = RetrievalModel.load(model_path)
    metrics: dict[str, Any] = {}
    test = accuracy_on(model, test_path)
    if test is not None:
        metrics["test_accuracy"] = test
    golden = accuracy_on(model, golden_path)
    if golden is not None:
        metrics[GOLDEN_PASS_RATE] = golden
    return metrics


#: the gate: no worse than the champion on held-out production data (a few points of
#: noise allowed on a small test set), and every golden item still answered
GATE = EvaluationRule((MetricRule("test_accuracy", max_regression=0.05),), min_golden_pass_rate=1.0)


def run_demo(
    workdir: Path,
    *,
    seed: int = 7,
    hours: int = 72,
    say: Callable[[str], None] = print,
    database: str | None = None,
    reuse_database: bool = False,
) -> dict[str, Any]:
    """Run the whole cycle in ``workdir`` (usage records there too, unless ``database``
    names a SQLite file or a PostgreSQL URL); return the final summary.

    The demo writes thousands of synthetic records, and records already there would
    change its A/B test (every one halts on the mismatch): a database that holds records
    is refused unless ``reuse_database``.
    """
    target = database if database is not None else str(workdir / "usage.db")
    _check_fresh(target, reuse=reuse_database, say=say)
    rng = random.Random(seed)
    models_dir = workdir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    clock = SimulatedClock(datetime(2026, 11, 2, 8, 0, tzinfo=UTC))

    say("== 1. The champion: nayru-v1, trained on 12 of 40 topics")
    known = rng.sample(range(len(KNOWLEDGE)), 12)
    seed_data = workdir / "rehearsal_buffer.jsonl"
    with seed_data.open("w", encoding="utf-8") as out:
        for index in known:
            topic, reference = KNOWLEDGE[index]
            for template in TRAIN_TEMPLATES[:2]:
                sample = Sample(template.format(t=topic), reference)
                out.write(json.dumps(format_sample("chatml", sample)) + "\n")
    champion = RetrievalModel.train(seed_data)
    champion.save(models_dir / "nayru-v1.json")
    models: dict[str, RetrievalModel] = {"nayru-v1": champion}
    say(f"  held-out accuracy of nayru-v1: {held_out_accuracy(champion):.0%}")
    golden = workdir / "golden.jsonl"  # what the champion knows must never break
    with golden.open("w", encoding="utf-8") as out:
        for index in known:
            topic, reference = KNOWLEDGE[index]
            sample = Sample(TRAIN_TEMPLATES[0].format(t=topic), reference)
            out.write(json.dumps(format_sample("chatml", sample)) + "\n")

    config = LoopConfig(
        db_path=target,
        output_dir=workdir,
        models_dir=models_dir,
        champion_model="nayru-v1",
        champion_path=str(models_dir / "nayru-v1.json"),
        check_interval_seconds=3600,
        trigger_config=TriggerConfig(
            min_new_samples=150,
            min_samples_for_retrain=50,
            enable_scheduled=False,
            enable_quality_drop=False,
            cooldown_hours=12,
        ),
        generator_config=DataGeneratorConfig(
            min_quality_score=0.7,
            min_user_feedback=1,
            existing_data_path=seed_data,
            split=(0.8, 0.1, 0.1),
            golden_path=golden,
        ),
        ab_test_config=ABTestConfig(
            initial_challenger_traffic=0.3,
            min_samples_per_version=150,
            min_requests_per_arm=100,  # a small demo: intervals from ~6 h into the test
            min_duration_hours=12,
            evaluation_window_hours=24,
        ),
    )
    loop = ContinuousLearningLoop(
        config, clock=clock, rng=random.Random(seed), eval_fn=evaluate, evaluation=GATE
    )
    loop.ensure_champion()
    train = _trainer(models_dir, corrupt_first=True)
    say("== 2. Production traffic, hour by hour (60 requests/hour)")
    narrated = {"retrains": 0}
    promoted_at: int | None = None
    decisive = ""
    try:
        for hour in range(hours):
            served = _serve_hour(loop, models, rng, clock, requests=60)
            clock.now += timedelta(hours=1)  # the loop looks back on the hour just served
            result = loop.run_iteration(train)
            _narrate(say, hour, served, result, narrated)
            if "champion_promoted" in result:
                promoted_at = hour
                decisive = result["ab_test_update"]["reason"]
            if promoted_at is not None and hour >= promoted_at + 1:
                break
        summary = _summary(loop, models)
        if promoted_at is not None:
            summary["lines"].append(f"promoted at hour {promoted_at} on: {decisive}")
        running = loop.ab_test_manager.challenger
        if running is not None:  # the demo ends an hour after a promotion, not with a test
            summary["lines"].append(
                f"{running.name} was still being tested when the demo ended (it stops an "
                "hour after a promotion; --hours and --dir to watch longer)"
            )
    finally:
        loop.close()
    say("== 4. Summary")
    for line in summary["lines"]:
        say("  " + line)
    return summary


def _serve_hour(
    loop: ContinuousLearningLoop,
    models: dict[str, RetrievalModel],
    rng: random.Random,
    clock: SimulatedClock,
    *,
    requests: int,
) -> dict[str, list[float]]:
    """An hour of traffic, each record logged when it happens; the clock is back at the
    hour's start afterwards (the loop's iteration runs at its end, on what it saw)."""
    now = clock.now
    served: dict[str, list[float]] = {}
    for i in range(requests):
        topic, reference = KNOWLEDGE[rng.randrange(len(KNOWLEDGE))]
        query = rng.choice(TRAIN_TEMPLATES).format(t=topic)
        version = loop.route_request(key=f"request-{now:%Y%m%d%H}-{i}")
        assert version is not None
        if version.name not in models:
            models[version.name] = RetrievalModel.load(version.path)
        answer = models[version.name].answer(query)
        quality = round(token_f1(answer, reference), 4)
        served.setdefault(version.name, []).append(quality)
        draw = rng.random()
        feedback = (1 if draw < 0.5 else None) if quality >= 0.7 else (-1 if draw < 0.5 else None)
        stamp = now + timedelta(seconds=i * 3600 // requests)
        clock.now = stamp  # logged when it happens: a record is never from the future
        loop.log_usage(query, answer, version.name, latency_ms=rng.lognormvariate(4.0, 0.3),
                       quality_score=quality, user_feedback=feedback, timestamp=stamp)  # fmt: skip
        if quality < 0.4:  # a human expert steps in, and the user is satisfied
            loop.log_usage(query, reference, "expert-support", latency_ms=60_000.0,
                           quality_score=1.0, user_feedback=1, timestamp=stamp)  # fmt: skip
    clock.now = now
    return served


def _narrate(
    say: Callable[[str], None],
    hour: int,
    served: dict[str, list[float]],
    result: dict[str, Any],
    narrated: dict[str, int],
) -> None:
    traffic = ", ".join(
        f"{name} {len(q)} req, quality {sum(q) / len(q):.2f}" for name, q in sorted(served.items())
    )
    say(f"  hour {hour:2d}: {traffic}")
    update = result.get("ab_test_update")
    if update and (hour % 3 == 0 or update["action"] != "continue"):
        say(f"  A/B: {update['winner']} -> {update['action']}: {update['reason']}")
    if "champion_promoted" in result:
        say(f"  PROMOTED: {result['champion_promoted']} is the new champion")
    if "challenger_rolled_back" in result:
        say(f"  rolled back: {result['challenger_rolled_back']}")
    retrain = result.get("retrain")
    if retrain:
        trigger = retrain["trigger"]
        first = not narrated["retrains"]
        narrated["retrains"] += 1
        heading = "== 3. Retrain triggered" if first else f"== Retrain {narrated['retrains']}"
        say(f"{heading} ({trigger['type']}): {trigger['reason']}")
        generation = retrain["generation"]
        held = generation.get("split") or {}
        say(
            f"  data set: {generation['final_count']} training samples "
            f"({generation['usage_samples']} from production, "
            f"{generation['existing_samples']} from the rehearsal buffer), "
            f"{held.get('test', 0)} held out for the offline test; status {retrain['status']}"
        )
        metrics = (retrain.get("training") or {}).get("metrics", {})
        if metrics:
            say(
                f"  trained {retrain['training']['model_name']} on {metrics['train_examples']} "
                f"examples; held-out accuracy {metrics['heldout_accuracy']:.0%}"
            )
        gate = retrain.get("evaluation")
        if gate:
            shown = ", ".join(
                f"{c['name']} {c['candidate']:.0%}"
                + (f" (champion {c['champion']:.0%})" if c["champion"] is not None else "")
                for c in gate["checks"] if c["candidate"] is not None
            )  # fmt: skip
            say(f"  offline gate: {shown}: {'passed' if gate['passed'] else 'failed'}")
    if "challenger_rejected" in result:
        rejected = result["challenger_rejected"]
        say(f"  REJECTED offline: {rejected['name']} never meets users: "
            + "; ".join(rejected["reasons"]))  # fmt: skip
    if "challenger_deployed" in result:
        deployed = result["challenger_deployed"]
        share = deployed["traffic_weight"]
        say(f"  challenger {deployed['name']} deployed with {share:.0%} of traffic")


def _summary(loop: ContinuousLearningLoop, models: dict[str, RetrievalModel]) -> dict[str, Any]:
    status = loop.get_status_summary()
    champion = status["status"]["champion_model"]
    accuracy = {name: held_out_accuracy(model) for name, model in sorted(models.items())}
    history = loop.ab_test_manager.history
    lines = [
        f"champion: {champion}; retrains: {status['status']['total_retrains']}; "
        f"records logged: {status['usage_stats']['total']}",
        "held-out accuracy: " + ", ".join(f"{n} {a:.0%}" for n, a in accuracy.items()),
        "retired: " + (", ".join(v.name for v in history) or "none"),
    ]
    return {
        "champion": champion,
        "total_retrains": status["status"]["total_retrains"],
        "heldout_accuracy": accuracy,
        "retired": [v.name for v in history],
        "lines": lines,
    }


def _check_fresh(target: str, *, reuse: bool, say: Callable[[str], None]) -> None:
    shown = redact_secrets(target)
    if is_postgres_url(target) or Path(target).expanduser().exists():
        with UsageLogger(db_path=target) as existing:
            held = existing.get_statistics()["total"]
        if held and not reuse:
            raise ContinuousError(
                f"{shown} already holds {held} usage records; the demo writes thousands of "
                "synthetic ones and its A/B test would mix them with yours. Give it an empty "
                "database (or none: it makes its own), or pass --reuse-db to run there anyway"
            )
        if held:
            say(f"  (writing the demo's synthetic records beside the {held} already in {shown})")
            return
    say(f"  (the demo's synthetic records go to {shown})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="afs-continuous demo",
        description="Watch the whole continuous-learning cycle run on simulated production "
        "traffic with a small real model (well under a minute).",
    )
    parser.add_argument("--dir", help="work directory to keep (default: a temporary one)")
    parser.add_argument(
        "--seed", type=whole_number(0, 2**32 - 1), default=7, help="random seed (default 7)"
    )
    parser.add_argument(
        "--hours",
        type=whole_number(1, 1000, what="a number of hours"),
        default=72,
        help="simulated hours at most (1 to 1000; default 72)",
    )
    parser.add_argument(
        "--db",
        help="where to keep the usage records: a SQLite file or a postgresql:// URL of an "
        "empty database (default: a fresh SQLite file in the work directory)",
    )
    parser.add_argument(
        "--reuse-db",
        action="store_true",
        help="run even if --db already holds usage records (they will skew the A/B test)",
    )
    args = parser.parse_args(argv)
    options: dict[str, Any] = {
        "seed": args.seed, "hours": args.hours, "database": args.db,
        "reuse_database": args.reuse_db,
    }  # fmt: skip
    try:
        if args.dir:
            workdir = Path(args.dir).expanduser()
            if workdir.exists() and not workdir.is_dir():
                print(f"afs-continuous demo: error: --dir {args.dir}: is a file, not a "
                      "directory", file=sys.stderr)  # fmt: skip
                return 2
            run_demo(workdir, **options)
        else:
            with tempfile.TemporaryDirectory(prefix="afs-demo-") as tmp:
                run_demo(Path(tmp), **options)
            print("(the work directory was temporary and is gone; --dir DIR keeps it)")
    except (ContinuousError, OSError) as exc:
        print(f"afs-continuous demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nafs-continuous demo: interrupted", file=sys.stderr)
        return 130
    return 0
