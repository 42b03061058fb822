"""The controllers' shared resources."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from afs.continuous.kube.controllers import StorePool
from tests.postgres_server import fresh_schema


def test_resources_reconciled_at_once_share_one_store_per_database() -> None:
    stores = StorePool(retry_seconds=10.0)
    with fresh_schema() as url:
        with ThreadPoolExecutor(8) as pool:
            loggers = list(pool.map(lambda _: stores.logger_for(url), range(16)))
        try:
            assert len({id(logger) for logger in loggers}) == 1
            assert list(stores.loggers) == [url]
        finally:
            stores.close()
        assert stores.loggers == {}
        assert loggers[0].store.pool.closed  # type: ignore[attr-defined]
