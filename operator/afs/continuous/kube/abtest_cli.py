"""``afs-continuous abtest list|status|promote|abort|report``: look at A/B tests and act
on them through the API. ``promote`` and ``abort`` set the annotation the operator
consumes (``continuous.afs.dev/action``), so they work the same from ``kubectl
annotate``. ``report`` draws a test (in the cluster, or the local loop's) over time."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from afs.continuous.ab_test import ABTestManager
from afs.continuous.argtypes import whole_number
from afs.continuous.errors import ContinuousError
from afs.continuous.kube.api.v1alpha1 import ABTestPhase, ABTestSpec, ABTestStatus, LearningLoopSpec
from afs.continuous.kube.client import (
    KubeApiError,
    KubeClient,
    quiet_transport_retries,
    unreachable,
)
from afs.continuous.kube.controllers.shared import database_url
from afs.continuous.kube.rollout import ACTION_ANNOTATION, decision_settings, epoch_windows
from afs.continuous.logger import UsageLogger
from afs.continuous.loop_cli import require_database
from afs.continuous.report import DEFAULT_POINTS, TestRecord, local_test, write_report
from afs.continuous.store import resolve_target
from afs.continuous.timeutil import parse_timestamp, utc_now

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="afs-continuous abtest",
        description="Look at the operator's A/B tests, approve a promotion or abort a test.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-n", "--namespace", help="namespace (default: the kubeconfig context's, else default)"
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("list", parents=[common], help="the A/B tests, one line each")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")
    p = sub.add_parser("status", parents=[common], help="one test: phase, weights, evidence")
    p.add_argument("name")
    p = sub.add_parser(
        "promote", parents=[common],
        help="approve the challenger's promotion (acted on once the evidence says PROMOTE)",
    )  # fmt: skip
    p.add_argument("name")
    p = sub.add_parser(
        "abort",
        parents=[common],
        help="end the test now: original weights back, challenger rejected",
    )
    p.add_argument("name")
    p = sub.add_parser(
        "report", parents=[common],
        help="draw a test: each metric's interval over time, thresholds, weights, verdict",
        description="Replays the test's judgement at evenly spaced moments from its usage "
        "records and writes <name>.png and <name>.html. An ABTest in the cluster by NAME, "
        "or the local loop's test with --state (its ab_test_state.json). Needs matplotlib: "
        "pip install 'afs-continuous[report]'.",
    )  # fmt: skip
    p.add_argument("name", nargs="?", help="the ABTest (not with --state)")
    p.add_argument("--state", help="a local loop's A/B state file (ab_test_state.json)")
    p.add_argument(
        "--last", action="store_true",
        help="with --state: the test that ended last, even while another runs",
    )  # fmt: skip
    p.add_argument(
        "--db", help="the usage database (default: the ABTest's Secret, or the local "
        "loop's usage.db beside the state file; AFS_DATABASE_URL)",
    )  # fmt: skip
    p.add_argument("--out", default=".", help="where to write the files (default: here)")
    p.add_argument(
        "--points", type=whole_number(2, 1000), default=DEFAULT_POINTS,
        help=f"moments replayed (default {DEFAULT_POINTS})",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "report" and (args.state is None) == (args.name is None):
        print("afs-continuous abtest: error: report needs an ABTest NAME or --state FILE, "
              "not both", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    quiet_transport_retries()
    try:
        if args.action == "report" and args.state is not None:
            return _report_local(args)
        kube = KubeClient.connect()
        namespace = args.namespace or KubeClient.default_namespace()
        if args.action == "list":
            return _list(kube, None if args.all_namespaces else namespace, as_json=args.json)
        test = kube.get_custom_object("abtests", namespace, args.name)
        if test is None:
            raise LookupError(f"abtest {namespace}/{args.name} not found")
        if args.action == "status":
            return _status(test, as_json=args.json)
        if args.action == "report":
            return _report_cluster(kube, test, args)
        return _act(kube, test, args.action, as_json=args.json)
    except (KubeApiError, LookupError, ContinuousError, OSError) as exc:
        print(f"afs-continuous abtest: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        why = unreachable(exc)
        if why is None:
            raise
        print(f"afs-continuous abtest: error: {why}", file=sys.stderr)
        return EXIT_ERROR


def _summary(test: dict[str, Any]) -> dict[str, Any]:
    spec, status = test.get("spec") or {}, test.get("status") or {}
    return {
        "namespace": test["metadata"].get("namespace"),
        "name": test["metadata"]["name"],
        "phase": status.get("phase") or "Pending",
        "step": status.get("step", 0) + 1 if status.get("weights") else None,
        "steps": len(spec.get("steps") or [{}]),
        "weights": status.get("weights"),
        "verdict": status.get("verdict"),
        "champion": (spec.get("champion") or {}).get("modelVersion"),
        "challenger": (spec.get("challenger") or {}).get("modelVersion"),
        "promotion": spec.get("promotion", "auto"),
    }


def _list(kube: KubeClient, namespace: str | None, *, as_json: bool) -> int:
    rows = [_summary(t) for t in kube.list_custom_objects("abtests", namespace)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no A/B tests" + (f" in namespace {namespace}" if namespace else ""))
        return 0
    header = ("NAMESPACE", "NAME", "PHASE", "STEP", "WEIGHT", "VERDICT", "CHAMPION", "CHALLENGER")
    table = [header] + [
        (
            r["namespace"], r["name"], r["phase"],
            f"{r['step']}/{r['steps']}" if r["step"] else "-",
            f"{r['weights']['challenger']}%" if r["weights"] else "-",
            r["verdict"] or "-", r["champion"] or "-", r["challenger"] or "-",
        )
        for r in rows
    ]  # fmt: skip
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


def _status(test: dict[str, Any], *, as_json: bool) -> int:
    summary, status = _summary(test), test.get("status") or {}
    if as_json:
        print(json.dumps({**summary, "status": status}, indent=2))
        return 0
    print(f"ABTest {summary['namespace']}/{summary['name']}: {summary['phase']}")
    print(f"  champion   {summary['champion']}")
    print(f"  challenger {summary['challenger']}  (promotion: {summary['promotion']})")
    if summary["weights"]:
        w = summary["weights"]
        print(f"  step {summary['step']}/{summary['steps']}: challenger {w['challenger']}%, "
              f"champion {w['champion']}%")  # fmt: skip
    if summary["verdict"]:
        print(f"  verdict    {summary['verdict']}: {status.get('reason', '')}")
    arms = (status.get("evidence") or {}).get("arms") or {}
    for arm in ("champion", "challenger"):
        numbers = arms.get(arm)
        if numbers:
            quality = numbers.get("mean_quality")
            print(
                f"  {arm:<10} {numbers.get('requests', 0)} requests, "
                f"{numbers.get('rated', 0)} rated, mean quality "
                + ("-" if quality is None else f"{quality:.4f}")
            )
    quality = (status.get("evidence") or {}).get("quality")
    if quality:
        print(
            f"  quality difference {quality['estimate']:+.4f} "
            f"[{quality['lower']:+.4f}, {quality['upper']:+.4f}]"
        )
    for condition in status.get("conditions") or []:
        print(
            f"  {condition['type']}={condition['status']} {condition['reason']}: "
            f"{condition.get('message', '')}"
        )
    return 0


def _act(kube: KubeClient, test: dict[str, Any], action: str, *, as_json: bool) -> int:
    summary = _summary(test)
    phase = ABTestPhase(summary["phase"])
    where = f"{summary['namespace']}/{summary['name']}"
    if phase.finished:
        raise LookupError(f"abtest {where} has ended ({phase.value}); nothing to {action}")
    body = {"metadata": {"annotations": {ACTION_ANNOTATION: action}}}
    kube.patch_custom_object("abtests", summary["namespace"], summary["name"], body)
    if action == "abort":
        message = (
            f"abort of {where} requested: the original weights come back at the next reconcile"
        )
    elif phase == ABTestPhase.WAITING_PROMOTION:
        message = f"promotion of {summary['challenger']} approved: it happens at the next reconcile"
    else:
        message = (
            f"promotion of {summary['challenger']} approved in advance: it happens once the "
            f"evidence says PROMOTE (now {phase.value})"
        )
    print(
        json.dumps({"abtest": where, "action": action, "message": message}) if as_json else message
    )
    return 0


def _write(store_target: str, test: TestRecord, args: argparse.Namespace, now: datetime) -> int:
    """Replay ``test`` from ``store_target`` and write the files; say where."""
    with UsageLogger(store_target) as logger:
        png, page = write_report(logger.store, test, Path(args.out), now=now, points=args.points)
    if args.json:
        print(json.dumps({"png": str(png), "html": str(page)}))
    else:
        print(f"wrote {png} and {page}")
    return 0


def _report_local(args: argparse.Namespace) -> int:
    state_file = Path(args.state).expanduser()
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ContinuousError(f"{state_file}: not a readable A/B state ({exc})") from None
    if not isinstance(state, dict):
        raise ContinuousError(f"{state_file}: not an A/B state (not a JSON object)")
    target = args.db or os.environ.get("AFS_DATABASE_URL") or str(state_file.parent / "usage.db")
    require_database(resolve_target(target), flag="--db")
    with UsageLogger(target) as logger:
        ABTestManager(logger, state_file=state_file)  # refuses another database's state
    return _write(target, local_test(state, last=args.last), args, utc_now())


def _report_cluster(kube: KubeClient, obj: dict[str, Any], args: argparse.Namespace) -> int:
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    spec = ABTestSpec.model_validate(obj.get("spec") or {})
    status = ABTestStatus.from_status(obj.get("status"))
    if status.started is None:
        raise LookupError(f"abtest {namespace}/{name} has not started")
    now = utc_now()
    ended = parse_timestamp(status.finished) if status.finished else None
    test = TestRecord(
        title=name, champion=spec.champion.records, challenger=spec.challenger.records,
        started=parse_timestamp(status.started), ended=ended,
        windows=epoch_windows(status, ended or now), settings=decision_settings(spec),
        outcome=status.phase.value if status.phase is not None and status.phase.finished else "",
    )  # fmt: skip
    target = args.db or os.environ.get("AFS_DATABASE_URL") or _cluster_database(kube, obj, spec)
    return _write(target, test, args, now)


def _cluster_database(kube: KubeClient, obj: dict[str, Any], spec: ABTestSpec) -> str:
    """The URL the operator reads the test's records from: the ABTest's Secret, else its
    LearningLoop's (reachable from here only when the database is)."""
    namespace = obj["metadata"]["namespace"]
    ref = None if spec.database is None else spec.database.url_secret_ref
    if ref is None:
        owners = (obj.get("metadata") or {}).get("ownerReferences") or []
        loop = next((o["name"] for o in owners if o.get("kind") == "LearningLoop"), None)
        found = None if loop is None else kube.get_custom_object("learningloops", namespace, loop)
        if found is None:
            raise LookupError(
                f"abtest {namespace}/{obj['metadata']['name']} names no database and has no "
                "LearningLoop: give --db"
            )
        ref = LearningLoopSpec.model_validate(found["spec"]).database.url_secret_ref
    return database_url(kube, namespace, ref)
