"""``afs-continuous operator``: run the kopf operator.

Standalone by default: kopf elects no leader without its peering resources, so run one
replica (``--peering NAME`` when the peering CRDs are installed). Settings come from the
flags or the environment (``AFS_OPERATOR_NAMESPACE``, ``AFS_OPERATOR_POLL_SECONDS``,
``AFS_EXPORTER_IMAGE``, ``AFS_METRICS_PORT``, ``AFS_HEALTH_PORT``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import kopf
from prometheus_client import start_http_server

from afs.continuous.argtypes import port, positive_seconds
from afs.continuous.kube.client import KubeApiError, KubeClient
from afs.continuous.kube.controllers import OperatorConfig, make_registry
from afs.continuous.kube.metrics import OperatorMetrics
from afs.continuous.kube.pod_security import parse_level
from afs.continuous.kube.training.export import DEFAULT_EXPORTER_IMAGE

T = TypeVar("T")


_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _namespace(text: str) -> str:
    if not _NAMESPACE.match(text):
        raise ValueError(f"not a namespace name: {text!r}")
    return text


def _checked(convert: Callable[[str], T]) -> Callable[[str], T]:
    """``convert`` for argparse: its message, not a bare "invalid value"."""

    def check(text: str) -> T:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


# (option dest, environment variable, conversion, default)
ENVIRONMENT: list[tuple[str, str, Callable[[str], Any], Any]] = [
    ("namespace", "AFS_OPERATOR_NAMESPACE", _namespace, None),
    ("poll_seconds", "AFS_OPERATOR_POLL_SECONDS", positive_seconds, 30.0),
    ("exporter_image", "AFS_EXPORTER_IMAGE", str, DEFAULT_EXPORTER_IMAGE),
    ("metrics_port", "AFS_METRICS_PORT", port, 9090),
    ("health_port", "AFS_HEALTH_PORT", port, 8080),
    ("pod_security_level", "AFS_POD_SECURITY_LEVEL", parse_level, "restricted"),
]
#: the pod security level's former variable (restricted | permissive), read when the new
#: one is not set, so a deployment written for an older operator keeps its setting
LEGACY_LEVEL_VARIABLE = "AFS_TRAINING_POLICY"


class _DefaultsShown(argparse.HelpFormatter):
    """Each option's default in its help, when it has one to show (not "None")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="afs-continuous operator",
        description="Reconcile LearningLoops: check triggers against the usage database, "
        "run training Jobs, record ModelVersions. Every setting can also come from the "
        "environment variable named in its help.",
        formatter_class=_DefaultsShown,
    )

    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        type=_checked(_namespace),
        help="watch one namespace (AFS_OPERATOR_NAMESPACE)",
    )
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--poll-seconds", type=positive_seconds,
        help="how often each loop is reconciled; its checkInterval decides when it checks "
        "(AFS_OPERATOR_POLL_SECONDS)",
    )  # fmt: skip
    parser.add_argument(
        "--exporter-image", help="image of the data-export init container (AFS_EXPORTER_IMAGE)"
    )
    parser.add_argument(
        "--metrics-port", type=port,
        help="Prometheus metrics port, 0 disables (AFS_METRICS_PORT)",
    )  # fmt: skip
    parser.add_argument(
        "--health-port", type=port,
        help="port of the /healthz liveness probe, 0 disables (AFS_HEALTH_PORT)",
    )  # fmt: skip
    parser.add_argument(
        "--pod-security-level", type=_checked(parse_level),
        help="the Pod Security Standards level every pod the operator makes must meet "
        "(training Jobs and their engines' pod templates, deploy-mode Deployments); "
        "restricted or baseline refuse a spec asking for more (InvalidSpec), privileged "
        "leaves that to the cluster's own admission (AFS_POD_SECURITY_LEVEL)",
    )  # fmt: skip
    parser.add_argument(  # the former name; "permissive" is "privileged"
        "--training-policy", dest="pod_security_level", type=_checked(parse_level),
        help=argparse.SUPPRESS,
    )  # fmt: skip
    parser.add_argument("--peering", help="use kopf peering NAME instead of --standalone")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    # the environment gives the defaults; a bad value is refused by its variable's name
    defaults: dict[str, Any] = {}
    variables = dict(os.environ)
    if "AFS_POD_SECURITY_LEVEL" not in variables and LEGACY_LEVEL_VARIABLE in variables:
        variables["AFS_POD_SECURITY_LEVEL"] = variables[LEGACY_LEVEL_VARIABLE]
    for dest, name, convert, fallback in ENVIRONMENT:
        raw = variables.get(name)
        try:
            defaults[dest] = fallback if raw is None else convert(raw)
        except ValueError as exc:
            parser.error(f"{name}: {exc}")
    parser.set_defaults(**defaults)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.all_namespaces and not args.namespace:
        parser.error("give --namespace NS or --all-namespaces")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    try:
        kube = KubeClient.connect()
    except KubeApiError as exc:  # no kubeconfig and not in a pod: say so, no traceback
        print(
            f"afs-continuous operator: error: {str(exc).rstrip('.')}. Run it in a cluster "
            "(it uses its ServiceAccount) or point KUBECONFIG at a kubeconfig file",
            file=sys.stderr,
        )
        return 2
    metrics = OperatorMetrics()
    if args.metrics_port:
        start_http_server(args.metrics_port, registry=metrics.registry)
    registry = make_registry(
        OperatorConfig(
            poll_seconds=args.poll_seconds,
            exporter_image=args.exporter_image,
            pod_security_level=args.pod_security_level,
        ),
        kube,
        metrics=metrics,
    )

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # the same credentials as the kubernetes client: in-cluster, else the kubeconfig
        return kopf.login_via_client(**kwargs)

    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=args.peering is None,
            peering_name=args.peering,
            clusterwide=bool(args.all_namespaces),
            namespaces=[] if args.all_namespaces else [args.namespace],
            liveness_endpoint=(
                f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
            ),
        )
    )
    return 0
