"""Running the loop from the command line: ``scripts/continuous_loop.py`` and
``afs-continuous run | status | trigger``, with the seed's flags."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from afs.continuous.ab_test import ABTestManager
from afs.continuous.argtypes import positive_count
from afs.continuous.config import ConfigError, LoopConfig, build_config, load_config_file
from afs.continuous.errors import ContinuousError
from afs.continuous.logger import UsageLogger
from afs.continuous.loop import ContinuousLearningLoop, read_status
from afs.continuous.store import database_exists
from afs.continuous.trigger import RetrainTrigger

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def require_database(target: str | Path, *, flag: str) -> None:
    """Refuse a SQLite file that is not there: commands that read would otherwise create
    an empty database (and its folders) at a mistyped path and report nothing."""
    if not database_exists(target):
        raise ContinuousError(
            f"no database at {target}: check {flag} (or db_path, AFS_DATABASE_URL); "
            "`afs-continuous log`, `import` or `run` creates one"
        )


def add_loop_options(
    parser: argparse.ArgumentParser, *, with_db: bool = True, training: bool = True
) -> None:
    """The loop's options; ``training=False`` (``status``) leaves out those that only
    running the loop uses."""
    parser.add_argument("--config", help="loop configuration (JSON or YAML, the seed's keys)")
    if with_db:
        parser.add_argument("--db", dest="loop_db", help="usage database (overrides db_path)")
    parser.add_argument("--output-dir", help="state and data directory (overrides output_dir)")
    parser.set_defaults(train_cmd=None, no_train=False, max_iterations=None, verbose=False)
    if not training:
        return
    parser.add_argument(
        "--train-cmd",
        help='trainer command, e.g. "python train.py {data_path} {output_dir}"; it must print '
        "a JSON object with model_path (and metrics) as its last line",
    )
    parser.add_argument(
        "--no-train", action="store_true", help="only prepare data sets; do not train"
    )
    parser.add_argument("--max-iterations", type=positive_count, help="stop after this many checks")
    parser.add_argument("--verbose", "-v", action="store_true", help="log each step")


def loop_config(args: argparse.Namespace) -> LoopConfig:
    data: dict[str, Any] = load_config_file(args.config) if args.config else {}
    overrides = {
        "db_path": args.loop_db,
        "output_dir": args.output_dir,
        "train_command": args.train_cmd,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.no_train:
        data["train_command"] = None
    return build_config(LoopConfig, data, source=args.config or "command-line options")


def status_summary(config: LoopConfig) -> dict[str, Any]:
    """The loop's status without creating anything: missing files read as empty."""
    summary: dict[str, Any] = {"status": read_status(config.output_path).to_dict()}
    state_file = config.output_path / "ab_test_state.json"
    if config.database_url is None and not Path(config.db_path).exists():
        summary["usage_stats"] = summary["trigger_state"] = None
        summary["ab_test"] = None
        if state_file.exists():
            manager = ABTestManager(None, config.ab_test_config, state_file=state_file)
            if manager.database is not None:
                raise ContinuousError(
                    f"{state_file} holds the A/B test of {manager.database['name']}, and "
                    f"{config.db_path} does not exist; use that database"
                )
            summary["ab_test"] = manager.get_status()
        return summary
    with UsageLogger(config.database) as logger:
        summary["ab_test"] = (  # refuses a state file that belongs to another database
            ABTestManager(logger, config.ab_test_config, state_file=state_file).get_status()
            if state_file.exists()
            else None
        )
        summary["usage_stats"] = logger.get_statistics()
        summary["trigger_state"] = RetrainTrigger(logger, config.trigger_config).state.to_dict()
    return summary


def _describe(result: dict[str, Any]) -> str:
    parts = [result["timestamp"]]
    retrain = result.get("retrain")
    if retrain is None:
        parts.append("no retrain")
    else:
        trigger = retrain["trigger"]
        parts.append(f"retrain {retrain['status']} ({trigger['type']}: {trigger['reason']})")
        if retrain.get("error"):
            parts.append(f"error: {retrain['error']}")
    if "challenger_deployed" in result:
        parts.append(f"challenger {result['challenger_deployed']['name']} deployed")
    update = result.get("ab_test_update")
    if update:
        parts.append(f"A/B {update['winner']} -> {update['action']} ({update['reason']})")
    if "champion_promoted" in result:
        parts.append(f"champion is now {result['champion_promoted']}")
    if "challenger_rolled_back" in result:
        parts.append(f"challenger {result['challenger_rolled_back']} rolled back")
    return " | ".join(parts)


def run_loop_command(args: argparse.Namespace, mode: str) -> int:
    """``mode``: "run" (iterate), "status" (print, create nothing) or "trigger" (retrain now)."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = loop_config(args)
    as_json = getattr(args, "json", False)
    if mode == "status":
        print(json.dumps(status_summary(config), indent=2, default=str))
        return EXIT_OK
    if mode == "trigger":
        require_database(config.database, flag="--db")
    loop = ContinuousLearningLoop(config)
    try:
        if mode == "trigger":
            result = loop.run_iteration(force=True, reason="Manual trigger (command line)")
            print(json.dumps(result, indent=2, default=str) if as_json else _describe(result))
            failed = (result.get("retrain") or {}).get("status") == "failed"
            return EXIT_FAILED if failed else EXIT_OK

        def report(result: dict[str, Any]) -> None:
            print(json.dumps(result, default=str) if as_json else _describe(result), flush=True)

        def stop(signum: int, frame: FrameType | None) -> None:
            loop.stop()

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            loop.run_loop(max_iterations=args.max_iterations, on_iteration=report)
        except KeyboardInterrupt:
            loop.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return EXIT_OK
    finally:
        loop.close()


def continuous_loop_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/continuous_loop.py`` (the seed's daemon script)."""
    parser = argparse.ArgumentParser(
        prog="continuous_loop.py",
        description="Run the continuous-learning loop: check triggers, retrain, A/B test, "
        "promote. Without --status or --trigger it runs until stopped (or --max-iterations).",
    )
    add_loop_options(parser)
    parser.add_argument("--status", action="store_true", help="print the status and exit")
    parser.add_argument("--trigger", action="store_true", help="force a retrain now and exit")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    mode = "status" if args.status else "trigger" if args.trigger else "run"
    try:
        return run_loop_command(args, mode)
    except (ContinuousError, ConfigError, ValueError, OSError) as exc:
        print(f"continuous_loop.py: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
