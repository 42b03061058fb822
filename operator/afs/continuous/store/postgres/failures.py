"""What went wrong with a PostgreSQL connection, in words of our own.

libpq and psycopg quote the connection string in their errors: the host, the port, the
socket path, the user, the database, an option's name or value ("invalid sslmode value:
"<text>""). Where the URL comes from a Secret, every part of it is the Secret's content,
and conditions, Events, logs and metrics are read by far more people than the Secret
is. So the operator never shows a driver's message: it shows the kind of failure, found
by matching the message against what libpq says, and nothing the message quoted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from afs.continuous.errors import SchemaVersionError

# (a regular expression of what libpq or the server says, lower-cased; what we say): the first match
# wins
_KINDS: tuple[tuple[str, str], ...] = (
    ("invalid sslmode value", "is invalid: bad sslmode"),
    ("invalid port number", "is invalid: bad port"),
    ('for connection option "port"', "is invalid: bad port"),
    ("invalid uri query parameter", "is invalid: unknown connection option"),
    ("invalid connection option", "is invalid: unknown connection option"),
    ("invalid target_session_attrs value", "is invalid: bad target_session_attrs"),
    ("invalid gssencmode value", "is invalid: bad gssencmode"),
    ("invalid channel_binding value", "is invalid: bad channel_binding"),
    ("invalid load_balance_hosts value", "is invalid: bad load_balance_hosts"),
    ("invalid integer value", "is invalid: an option that takes a number has none"),
    ("invalid uri", "is malformed"),
    ("unexpected spaces", "is malformed (percent-encode spaces as %20)"),
    ("percent-encoded", "is malformed (a bad percent-encoding)"),
    ("end of string reached", "is malformed"),
    ("missing \"=\"", "is malformed"),
    ("password authentication failed", "was refused by the server: authentication failed"),
    ("no password supplied", "was refused by the server: it asks for a password"),
    (r'role ".*" does not exist', "was refused by the server: authentication failed"),
    (r'database ".*" does not exist', "was refused by the server: the database does not exist"),
    ("permission denied", "was refused by the server: permission denied"),
    ("no pg_hba.conf entry", "was refused by the server: no pg_hba.conf entry for this client"),
    ("unrecognized configuration parameter",
     "was refused by the server: an unknown setting in its options"),
    ("invalid value for parameter", "was refused by the server: a bad setting in its options"),
    ("too many clients", "was refused by the server: too many connections"),
    ("too many connections", "was refused by the server: too many connections"),
    ("the database system is starting up", "cannot be used yet: the server is starting up"),
    ("the database system is shutting down", "cannot be used: the server is shutting down"),
    ("connection refused", "cannot be reached: connection refused"),
    ("failed to resolve host", "cannot be reached: host name not found"),
    ("could not translate host name", "cannot be reached: host name not found"),
    ("name or service not known", "cannot be reached: host name not found"),
    ("no such file or directory", "cannot be reached: no server at that socket"),
    ("timeout expired", "cannot be reached: connection timed out"),
    ("timed out", "cannot be reached: connection timed out"),
    ("network is unreachable", "cannot be reached: network unreachable"),
    ("no route to host", "cannot be reached: no route to host"),
    ("certificate", "cannot be reached: the server's TLS certificate was not accepted"),
    ("ssl", "cannot be reached: TLS negotiation failed"),
    ("server closed the connection", "lost its connection: the server closed it"),
    ("terminating connection", "lost its connection: the server ended it"),
    ("<malformed url>", "is malformed (percent-encode any '/', '@', ':', '%' or space in "
                        "the user name and password)"),
)  # fmt: skip


_PATTERNS = tuple((re.compile(pattern), kind) for pattern, kind in _KINDS)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def failure_kind(exc: BaseException) -> str:
    """What went wrong with a connection, as a phrase that completes "the database URL
    …" (e.g. "cannot be reached: connection refused") and quotes nothing of the URL."""
    for each in _chain(exc):
        if isinstance(each, SchemaVersionError):
            if "newer" in str(each):
                return "holds a schema newer than this afs-continuous: upgrade it"
            return "holds an older schema: run `afs-continuous db migrate`"
        if isinstance(each, PoolClosed):
            return "was closed (the operator is shutting down)"
    for each in _chain(exc):
        text = " ".join(str(each).lower().split())
        for pattern, kind in _PATTERNS:
            if pattern.search(text):
                return kind
    for each in _chain(exc):
        if isinstance(each, PoolTimeout):
            return "cannot be reached: no connection within the pool's timeout"
    driver = next((e for e in _chain(exc) if isinstance(e, psycopg.Error)), exc)
    state = getattr(driver, "sqlstate", None)
    return f"failed ({type(driver).__name__}{f', SQLSTATE {state}' if state else ''})"


_SAFE_ARGUMENT = (int, float)
_PLAIN_WORD = re.compile(r"^[\w.-]{0,64}$")


class DriverLogFilter(logging.Filter):
    """Rewrites the PostgreSQL driver's and pool's log records so that what they quote
    of a connection (its error text, its repr with host, port, user and database) is
    replaced by the kind of failure or the object's type. Installed by the operator,
    whose log is read by people who may not read its Secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_shown(arg) for arg in args)
        elif isinstance(args, Mapping):
            record.args = {key: _shown(value) for key, value in args.items()}
        return True

    @staticmethod
    def install() -> None:
        """On the driver's loggers, once (a filter on a logger does not reach its children)."""
        for name in ("psycopg", "psycopg.pool"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, DriverLogFilter) for f in logger.filters):
                logger.addFilter(DriverLogFilter())


def _shown(arg: object) -> object:
    if isinstance(arg, BaseException):
        return f"the database {failure_kind(arg)}"
    if isinstance(arg, _SAFE_ARGUMENT) or (isinstance(arg, str) and _PLAIN_WORD.match(arg)):
        return arg  # a pool's name, a count, an exception's class name
    return f"<{type(arg).__name__}>"
