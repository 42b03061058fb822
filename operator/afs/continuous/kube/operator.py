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
from collections.abc import Sequence
from typing import Any

import kopf
from prometheus_client import start_http_server

from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.controllers import OperatorConfig, make_registry
from afs.continuous.kube.jobs import DEFAULT_EXPORTER_IMAGE
from afs.continuous.kube.metrics import OperatorMetrics


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="afs-continuous operator",
        description="Reconcile LearningLoops: check triggers against the usage database, "
        "run training Jobs, record ModelVersions.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", default=env("AFS_OPERATOR_NAMESPACE"), help="watch one namespace"
    )
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--poll-seconds", type=float, default=float(env("AFS_OPERATOR_POLL_SECONDS", "30")),
        help="how often each loop is reconciled (its checkInterval decides when it checks)",
    )  # fmt: skip
    parser.add_argument(
        "--exporter-image", default=env("AFS_EXPORTER_IMAGE", DEFAULT_EXPORTER_IMAGE),
        help="image of the data-export init container",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-port", type=int, default=int(env("AFS_METRICS_PORT", "9090")),
        help="Prometheus metrics port (0 disables)",
    )  # fmt: skip
    parser.add_argument(
        "--health-port", type=int, default=int(env("AFS_HEALTH_PORT", "8080")),
        help="port of the /healthz liveness probe (0 disables)",
    )  # fmt: skip
    parser.add_argument("--peering", help="use kopf peering NAME instead of --standalone")
    parser.add_argument("--verbose", "-v", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.all_namespaces and not args.namespace:
        build_parser().error("give --namespace NS or --all-namespaces")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    metrics = OperatorMetrics()
    if args.metrics_port:
        start_http_server(args.metrics_port, registry=metrics.registry)
    registry = make_registry(
        OperatorConfig(poll_seconds=args.poll_seconds, exporter_image=args.exporter_image),
        KubeClient.connect(),
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
