"""No part of a database Secret's value reaches anyone who may not read the Secret: with a
marker in every component and query option of the URL, the real operator (kopf, the
emulator, a real PostgreSQL where the server must answer) shows the marker nowhere — not
in the LearningLoops' and ABTests' status, not in the Events it posts, not in its log,
not in ``/metrics``. And an ABTest whose database cannot be read moves no traffic."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
from typing import Any

import kmock
import pytest
from prometheus_client import generate_latest

from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.controllers import (
    ABTestReconciler,
    LoopReconciler,
    OperatorConfig,
    StorePool,
)
from afs.continuous.kube.metrics import OperatorMetrics
from afs.continuous.store.postgres.failures import DriverLogFilter, failure_kind
from tests.kube.emulator import ApiServerEmulator
from tests.kube.test_abtest_scenarios import (
    ARMS,
    _abtest,
    _arm_weights,
    versions_and_route,
)
from tests.kube.test_operator_scenarios import (
    NAMESPACE,
    _call,
    _loop_manifest,
    _register,
)
from tests.postgres_server import base_url, closed_port

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(120)]
MARK = "zq7mk"


def _hostile_urls() -> dict[str, tuple[str, str]]:
    """Each URL with the marker in one place, and what the condition must say instead."""
    socket_dir = base_url().split("host=", 1)[1].split("&", 1)[0]
    local = f"/postgres?host={socket_dir}"
    closed = f"127.0.0.1:{closed_port()}"
    refused = "cannot be reached: connection refused"
    return {
        "user": (f"postgresql://{MARK}user@{local}", "was refused by the server: authentication"),
        "token-as-user": (f"postgresql://{MARK}token:{MARK}pw@{local}",
                          "was refused by the server: authentication"),
        "password": (f"postgresql://u:{MARK}pw@{closed}/usage", refused),
        "password-with-slash": (f"postgresql://u:a/{MARK}@{closed}/usage", "is malformed"),
        "password-with-space": (f"postgresql://u:a {MARK}@db/usage", "is malformed"),
        "host": (f"postgresql://u@{MARK}-host.invalid/usage?connect_timeout=2",
                 "cannot be reached: host name not found"),
        "port-option": (f"postgresql://u@127.0.0.1/usage?port={MARK}", "is invalid: bad port"),
        "database": (f"postgresql://postgres@/{MARK}db?host={socket_dir}",
                     "was refused by the server: the database does not exist"),
        "sslmode": (f"postgresql://u@{closed}/usage?sslmode={MARK}", "is invalid: bad sslmode"),
        "socket-path": (f"postgresql://u@/usage?host=/path/{MARK}",
                        "cannot be reached: no server at that socket"),
        "option-name": (f"postgresql://u@{closed}/usage?{MARK}=1",
                        "is invalid: unknown connection option"),
        "server-options": (f"postgresql://postgres@{local}&options=-c{MARK}%3D1",
                           "was refused by the server: an unknown setting"),
        "target-session-attrs": (f"postgresql://u@{closed}/usage?target_session_attrs={MARK}",
                                 "is invalid: bad target_session_attrs"),
        # the store's own connect_timeout wins over the URL's
        "connect-timeout": (f"postgresql://u@{closed}/usage?connect_timeout={MARK}", refused),
        "ssl-root-cert": (f"postgresql://u@{closed}/usage?sslmode=verify-full&sslrootcert=/{MARK}",
                          refused),
        "not-postgres": (f"mysql://u:{MARK}@db/usage", "is not a postgresql:// URL"),
        "libpq-string": (f"host=db password={MARK}", "is not a postgresql:// URL"),
    }  # fmt: skip


def _secret(name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }  # fmt: skip


def _ready(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


def _posted_events(emulator: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
    return [
        dict(request.data or {})
        for request in list(emulator)
        if request.method == "POST"
        and request.resource is not None
        and request.resource.plural == "events"
    ]


async def test_no_part_of_a_database_url_is_shown_anywhere(
    kmock: kmock.KubernetesEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The controllers as the handlers call them (the kopf path itself is in the
    operator's scenarios), once per hostile URL: all the cases run in a few seconds."""
    caplog.set_level(logging.DEBUG)
    _register(kmock)
    cases = _hostile_urls()
    kube = KubeClient.connect(host=str(kmock.url).rstrip("/"))
    config = OperatorConfig(poll_seconds=1.0, database_retry_seconds=1.0)
    stores, metrics = StorePool(retry_seconds=1.0), OperatorMetrics()
    loops = LoopReconciler(kube, config, stores, metrics=metrics)
    tests = ABTestReconciler(kube, config, stores, metrics=metrics)
    DriverLogFilter.install()  # as make_registry does
    await versions_and_route(kube)
    events: list[tuple[str, str, str]] = []

    def record(kind: str, reason: str, message: str) -> None:
        events.append((kind, reason, message))

    shown: dict[tuple[str, str], Any] = {}
    try:
        for case, (url, _) in cases.items():
            await _call(kube.core.create_namespaced_secret, NAMESPACE, _secret(f"db-{case}", url))
            ref = {"urlSecretRef": {"name": f"db-{case}", "key": "url"}}
            loop = _loop_manifest(database=ref)["spec"]
            status = await asyncio.to_thread(
                functools.partial(
                    loops.reconcile, name=f"loop-{case}", namespace=NAMESPACE, uid="u",
                    generation=1, spec=loop, status={}, event=record,
                )
            )  # fmt: skip
            metrics.set_loop(NAMESPACE, f"loop-{case}", status)
            shown["loop", case] = status.model_dump(by_alias=True, mode="json")
            test = _abtest(database=ref)["spec"]
            outcome = await asyncio.to_thread(
                functools.partial(
                    tests.reconcile, name=f"test-{case}", namespace=NAMESPACE, uid="u",
                    generation=1, spec=test, status={}, annotations={}, owners=[], event=record,
                )
            )  # fmt: skip
            metrics.set_database(NAMESPACE, "ABTest", f"test-{case}", outcome.status.conditions)
            shown["test", case] = outcome.status.model_dump(by_alias=True, mode="json")
        weights = await _call(_arm_weights, kube)
    finally:
        stores.close()
    for (kind, case), status in shown.items():
        ready = _ready({"status": status})
        assert ready is not None and ready["reason"] == "DatabaseUnavailable", (kind, case)
        expected = f"the URL in Secret {NAMESPACE}/db-{case} key url {cases[case][1]}"
        assert ready["message"].startswith(expected), (kind, case, ready["message"])
        assert MARK not in json.dumps(status).lower(), (kind, case)
    assert {reason for _, reason, _ in events} == {"DatabaseUnavailable"}
    assert len(events) == 2 * len(cases)
    assert MARK not in json.dumps(events).lower()
    assert MARK not in caplog.text.lower()
    assert MARK not in generate_latest(metrics.registry).decode().lower()
    # no ABTest moved a weight: users never reached a challenger nobody could judge
    assert weights == [(arm["name"], arm.get("weight")) for arm in ARMS]
    assert all(shown["test", case]["phase"] == "Pending" for case in cases)


@pytest.mark.parametrize(
    ("message", "arguments", "shown"),
    [
        ("error connecting in %r: %s", ("pool-1", "exception"),
         "error connecting in 'pool-1': the database cannot be reached: connection refused"),
        ("discarding broken connection: %s", ("connection",),
         "discarding broken connection: <Connection>"),
        ("rollback failed: %s: %s. Discarding connection %s",
         ("OperationalError", "exception", "connection"),
         "rollback failed: OperationalError: the database cannot be reached: connection refused. "
         "Discarding connection <Connection>"),
    ],
    ids=["connect", "broken-connection", "rollback"],
)  # fmt: skip
def test_the_driver_s_log_says_the_kind_of_failure_and_quotes_nothing(
    message: str, arguments: tuple[str, ...], shown: str
) -> None:
    class Connection:
        def __repr__(self) -> str:
            return f"<psycopg.Connection (host={MARK}.db user={MARK}) at 0x1>"

    error = OSError(f'connection to server at "{MARK}.db", port 1 failed: Connection refused')
    values = {"exception": error, "connection": Connection()}
    args = tuple(values.get(a, a) for a in arguments)
    record = logging.LogRecord("psycopg.pool", logging.WARNING, __file__, 1, message, args, None)
    assert DriverLogFilter().filter(record)
    assert record.getMessage() == shown


def test_the_filter_is_installed_once_on_each_driver_logger() -> None:
    DriverLogFilter.install()
    DriverLogFilter.install()
    for name in ("psycopg", "psycopg.pool"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, DriverLogFilter) for f in filters) == 1


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("FATAL:  password authentication failed for user \"x\"",
         "was refused by the server: authentication failed"),
        ("FATAL:  no pg_hba.conf entry for host \"10.0.0.1\"",
         "was refused by the server: no pg_hba.conf entry for this client"),
        ("FATAL:  sorry, too many clients already",
         "was refused by the server: too many connections"),
        ("FATAL:  the database system is starting up",
         "cannot be used yet: the server is starting up"),
        ("connection timeout expired", "cannot be reached: connection timed out"),
        ("server closed the connection unexpectedly", "lost its connection: the server closed it"),
        ("something no one has seen", "failed (OSError)"),
    ],
    ids=["password", "pg-hba", "too-many", "starting-up", "timeout", "closed", "unknown"],
)  # fmt: skip
def test_server_refusals_are_named_by_kind(text: str, kind: str) -> None:
    assert failure_kind(OSError(text)) == kind
