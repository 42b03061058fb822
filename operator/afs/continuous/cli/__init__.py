"""The ``afs-continuous`` command: log, import, inspect and export usage data; the loop,
the operator, the collector and privacy requests, each from its own module.

Exit status: 0 on success, 1 when the thing asked for does not exist (an unknown record
id), 2 on invalid input or configuration (with a message naming what is wrong).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from afs.continuous import __version__
from afs.continuous.cli.common import (
    EXIT_INVALID as EXIT_INVALID,
    EXIT_NOT_FOUND as EXIT_NOT_FOUND,
    EXIT_OK as EXIT_OK,
    CommandError as CommandError,
    common_options,
)
from afs.continuous.cli.export import add_export_commands
from afs.continuous.cli.maintenance import add_maintenance_commands
from afs.continuous.cli.privacy import add_privacy_commands
from afs.continuous.cli.records import add_record_commands
from afs.continuous.config import ConfigError
from afs.continuous.errors import ContinuousError
from afs.continuous.logger import UsageLogger
from afs.continuous.loop_cli import add_loop_options, require_database, run_loop_command
from afs.continuous.store import resolve_target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="afs-continuous",
        description="Continuous learning: log model usage, inspect it, export training data.",
        parents=[common_options(top_level=True)],
    )
    common = common_options(top_level=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_record_commands(sub, common)
    add_export_commands(sub, common)

    for mode, help_text in (
        ("run", "run the continuous-learning loop (until stopped or --max-iterations)"),
        ("status", "print the loop's status (creates nothing)"),
        ("trigger", "force a retrain now, then judge any A/B test"),
    ):
        p = sub.add_parser(mode, parents=[common], help=help_text, description=help_text)
        add_loop_options(p, with_db=False, training=mode != "status")
        p.set_defaults(loop_mode=mode)

    p = sub.add_parser(
        "demo", help="watch the whole cycle on simulated traffic (under a minute)", add_help=False
    )
    p.set_defaults(demo=True)

    sub.add_parser(
        "crds", help="write the CustomResourceDefinitions generated from the API models",
        add_help=False,
    )  # fmt: skip
    sub.add_parser(
        "operator", help="run the Kubernetes operator (LearningLoop → Job → ModelVersion)",
        add_help=False,
    )  # fmt: skip
    sub.add_parser(
        "abtest", help="the operator's A/B tests: list, status, promote, abort", add_help=False
    )
    sub.add_parser(
        "collect", help="receive usage and feedback over HTTP (native API, KServe, OpenAI)",
        add_help=False,
    )  # fmt: skip

    add_privacy_commands(sub, common)
    add_maintenance_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["afs-continuous"]:  # `podman run IMAGE afs-continuous …`
        print(
            "afs-continuous: error: the command was named twice; the image's entrypoint is "
            "afs-continuous already: give its arguments alone (IMAGE --help, IMAGE collect …)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    if arguments[:1] == ["demo"]:  # the demo has its own options and --help
        from afs.continuous.demo import main as demo_main

        return demo_main(arguments[1:])
    if arguments[:1] == ["operator"]:
        from afs.continuous.kube.operator import main as operator_main

        return operator_main(arguments[1:])
    if arguments[:1] == ["abtest"]:
        from afs.continuous.kube.abtest_cli import main as abtest_main

        return abtest_main(arguments[1:])
    if arguments[:1] == ["collect"]:
        from afs.continuous.collector.cli import main as collect_main

        return collect_main(arguments[1:])
    if arguments[:1] == ["crds"]:
        from afs.continuous.kube.crds import main as crds_main

        return crds_main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    try:
        if getattr(args, "loop_mode", None) is not None:
            args.loop_db = args.db
            return run_loop_command(args, args.loop_mode)
        if getattr(args, "prepare", None) is not None:  # the arguments first: no I/O
            args.prepare(args)
        if not getattr(args, "creates_db", False):
            require_database(resolve_target(args.db), flag="--db")
        if getattr(args, "store_command", None) is not None:
            return int(args.store_command(args))
        with UsageLogger(args.db) as logger:
            return int(args.handler(args, logger))
    except CommandError as exc:
        print(f"afs-continuous: error: {exc}", file=sys.stderr)
        return exc.code
    except (ContinuousError, ConfigError, ValueError, OSError) as exc:
        print(f"afs-continuous: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
