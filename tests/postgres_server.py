"""A throwaway PostgreSQL for the tests: the server named by ``AFS_TEST_DATABASE_URL``, or
one started from the ``pgserver`` wheel. Each test gets a schema of its own."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg

_server: object | None = None
_base_url: str | None = None


def base_url() -> str:
    global _server, _base_url
    if _base_url is None:
        external = os.environ.get("AFS_TEST_DATABASE_URL")
        if external:
            _base_url = external
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from pgserver.postgres_server import get_server

                started = get_server(tempfile.mkdtemp(prefix="afs-pg-"), cleanup_mode="delete")
            _server = started
            _base_url = started.get_uri()
    return _base_url


def server() -> object:
    """The pgserver handle (None when an external server is used)."""
    base_url()
    return _server


def with_schema(url: str, schema: str) -> str:
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL whose search_path is a new, empty schema, dropped afterwards."""
    url = base_url()
    schema = f"afs_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_schema(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def restart_server(*, stopped_for: float = 0.5) -> None:
    """Stop the throwaway server (fast shutdown: sessions are cut), then start it again."""
    import time

    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made at import

    handle = server()
    if handle is None:
        raise RuntimeError("an external server (AFS_TEST_DATABASE_URL) cannot be restarted")
    pgdata = handle.pgdata  # type: ignore[attr-defined]
    user = handle.system_user  # type: ignore[attr-defined]
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    time.sleep(stopped_for)
    handle.ensure_postgres_running()  # type: ignore[attr-defined]


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_url(*, password: str) -> str:
    """A PostgreSQL URL on a local port nothing listens on (connections are refused)."""
    return f"postgresql://u:{password}@127.0.0.1:{closed_port()}/usage"
