"""LoopReconciler's own resources."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.controllers import LoopReconciler, OperatorConfig
from tests.postgres_server import fresh_schema


def test_loops_checked_at_once_share_one_store_per_database() -> None:
    reconciler = LoopReconciler(KubeClient.connect("http://127.0.0.1:1"), OperatorConfig())
    with fresh_schema() as url:
        with ThreadPoolExecutor(8) as pool:
            loggers = list(pool.map(lambda _: reconciler.logger_for(url), range(16)))
        try:
            assert len({id(logger) for logger in loggers}) == 1
            assert list(reconciler.loggers) == [url]
        finally:
            reconciler.close()
        assert reconciler.loggers == {}
        assert loggers[0].store.pool.closed  # type: ignore[attr-defined]
