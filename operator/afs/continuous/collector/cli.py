"""``afs-continuous collect``: run the collector until SIGTERM or Ctrl-C, then flush."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from afs.continuous.argtypes import listen_port, positive_count, positive_seconds, whole_number
from afs.continuous.collector.app import Collector, CollectorSettings
from afs.continuous.collector.writer_process import ProcessWriter, freeze_startup_objects
from afs.continuous.config import build_config
from afs.continuous.errors import ContinuousError
from afs.continuous.logger import UsageLogger
from afs.continuous.privacy.options import add_redaction_options, redaction_options
from afs.continuous.privacy.settings import RedactionConfig
from afs.continuous.scoring import HeuristicScorer, scorer_from_spec
from afs.continuous.store import open_store, resolve_target

EXIT_INVALID = 2
#: how long a PostgreSQL write retries a lost connection before the request gets 503
STORE_RETRY_SECONDS = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="afs-continuous collect",
        description="Receive usage records and feedback over HTTP (native JSON/NDJSON API, "
        "KServe payload-logger CloudEvents, OpenAI-style request/response pairs) and write "
        "them to the usage database. A write is acknowledged once committed.",
    )
    parser.add_argument(
        "--db",
        help="SQLite file or postgresql:// URL (default: $AFS_DATABASE_URL, else the "
        "library's default file)",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default all)")
    parser.add_argument("--port", type=listen_port, default=8080, help="port (default 8080)")
    parser.add_argument(
        "--token-file",
        default=os.environ.get("AFS_COLLECTOR_TOKEN_FILE"),
        help="file holding the bearer token clients must send (a mounted Secret; default "
        "$AFS_COLLECTOR_TOKEN_FILE)",
    )
    parser.add_argument(
        "--no-auth", action="store_true",
        help="accept requests without a token (only where the network is trusted)",
    )  # fmt: skip
    parser.add_argument(
        "--kserve-port", type=listen_port,
        help="also listen here for KServe's payload logger alone (/v1/kserve), without a "
        "token: keep this port reachable only in the cluster (NetworkPolicy)",
    )  # fmt: skip
    parser.add_argument(
        "--max-body-bytes", type=whole_number(1, 1 << 30, what="a number of bytes"),
        default=CollectorSettings.max_body_bytes,
        help="largest request body; larger gets 413 (default 8 MiB)",
    )  # fmt: skip
    parser.add_argument(
        "--max-records", type=positive_count, default=CollectorSettings.max_records,
        help="most records in one request (default 10000)",
    )  # fmt: skip
    parser.add_argument(
        "--join-ttl", type=positive_seconds, default=CollectorSettings.join_ttl_s,
        help="seconds a KServe request waits for its response event (default 60)",
    )  # fmt: skip
    parser.add_argument(
        "--join-max-pending", type=positive_count, default=CollectorSettings.join_max_pending,
        help="KServe halves held at most; beyond, 503 (default 10000)",
    )  # fmt: skip
    parser.add_argument(
        "--async-max-pending", type=positive_count, default=CollectorSettings.async_max_pending,
        help="records ?async=1 may hold before they are committed; beyond, 503 "
        "(default 100000)",
    )  # fmt: skip
    parser.add_argument(
        "--body-timeout", type=positive_seconds, default=CollectorSettings.body_timeout_s,
        metavar="SECONDS",
        help="a request's whole body must arrive within this; later gets 408 (default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--retry-after", type=whole_number(1, 86_400, what="a number of seconds"),
        default=CollectorSettings.retry_after_s,
        help="seconds a 503 tells clients to wait (default 5)",
    )  # fmt: skip
    parser.add_argument(
        "--score", choices=["none", "heuristic"], default="none",
        help="score records that arrive without a quality_score (KServe's events carry "
        "none) with the built-in heuristic scorer; default none: left unscored",
    )  # fmt: skip
    parser.add_argument(
        "--scorer", metavar="SPEC",
        help="score records that arrive without a quality_score with this scorer: heuristic, "
        "discriminator:MODEL or judge:URL?model=NAME (instead of --score)",
    )  # fmt: skip
    add_redaction_options(
        parser, operators=("replace", "hash"),
        what="before anything is stored (queries, responses, conversations, feedback text)",
    )  # fmt: skip
    return parser


def read_token(path: str) -> str:
    """The token in a file (a mounted Secret): its text, surrounding whitespace removed."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ContinuousError(f"cannot read the token file {path}: {exc}") from exc
    if len(token) < 16:
        raise ContinuousError(
            f"the token in {path} is {len(token)} characters; use at least 16 (e.g. "
            "`openssl rand -hex 32`)"
        )
    return token


def settings_from(args: argparse.Namespace) -> CollectorSettings:
    if args.token_file and args.no_auth:
        raise ContinuousError("give --token-file or --no-auth, not both")
    if not args.token_file and not args.no_auth:
        raise ContinuousError(
            "no token: give --token-file (or $AFS_COLLECTOR_TOKEN_FILE), or --no-auth to "
            "accept anyone who can reach the port"
        )
    if args.kserve_port is not None and args.kserve_port == args.port:
        raise ContinuousError("--kserve-port must differ from --port")
    return CollectorSettings(
        token=read_token(args.token_file) if args.token_file else None,
        max_body_bytes=args.max_body_bytes,
        max_records=args.max_records,
        join_ttl_s=args.join_ttl,
        join_max_pending=args.join_max_pending,
        async_max_pending=args.async_max_pending,
        retry_after_s=args.retry_after,
        body_timeout_s=args.body_timeout,
    )


def open_logger(args: argparse.Namespace) -> UsageLogger:
    """The logger the collector writes through: a store whose PostgreSQL calls give up
    after :data:`STORE_RETRY_SECONDS` (the request then gets 503), and the scorer asked for."""
    target = resolve_target(args.db)
    redactor = None
    asked = redaction_options(args)
    if asked is not None:
        from afs.continuous.privacy.redactor import Redactor

        redactor = Redactor(build_config(RedactionConfig, asked, source="--redact options"))
    return UsageLogger(
        target,
        store=open_store(target, retry_seconds=STORE_RETRY_SECONDS),
        scorer=scorer_from_spec(args.scorer)
        if args.scorer
        else HeuristicScorer()
        if args.score == "heuristic"
        else None,
        redactor=redactor,
    )


async def serve(collector: Collector, *, host: str, port: int, kserve_port: int | None) -> None:
    """Serve until SIGTERM or SIGINT; then stop taking requests and flush."""
    runners = [web.AppRunner(collector.app())]
    if kserve_port is not None:
        runners.append(web.AppRunner(collector.app(authenticate=False, kserve_only=True)))
    await collector.start()  # the database writer's process, before any request comes
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for runner, listen_port in zip(runners, (port, kserve_port), strict=False):
            await runner.setup()
            await web.TCPSite(runner, host, listen_port).start()
        where = f"http://{host}:{port}" + (
            f" (KServe logger, no token: port {kserve_port})" if kserve_port else ""
        )
        auth = "token required" if collector.settings.token else "NO AUTHENTICATION"
        freeze_startup_objects()
        print(f"afs-continuous collect: listening on {where}; {auth}", file=sys.stderr)
        await stop.wait()
        print("afs-continuous collect: stopping, flushing queued records", file=sys.stderr)
    finally:
        for runner in runners:
            await runner.cleanup()
        await collector.stop_writing()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
        logger = open_logger(args)
    except (ContinuousError, OSError, ValueError) as exc:
        print(f"afs-continuous collect: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    writer = ProcessWriter(str(logger.db_path), retry_seconds=STORE_RETRY_SECONDS)
    collector = Collector(logger, settings, writer=writer)
    try:
        asyncio.run(serve(collector, host=args.host, port=args.port, kserve_port=args.kserve_port))
    except (OSError, ContinuousError) as exc:  # the port is taken, the writer cannot start
        print(f"afs-continuous collect: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    finally:
        collector.close()
        logger.close()
    return 0
