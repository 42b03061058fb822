"""A throwaway PostgreSQL for the tests: the server named by ``AFS_TEST_DATABASE_URL``, or
one started from the ``pgserver`` wheel. Each test gets a schema of its own."""

from __future__ import annotations

import os
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
                import pgserver

                _server = pgserver.get_server(
                    tempfile.mkdtemp(prefix="afs-pg-"), cleanup_mode="delete"
                )
            _base_url = _server.get_uri()  # type: ignore[attr-defined]
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
