"""What the controllers share: the operator's settings, the Event callback, and one pool
of usage stores for every resource that reads the usage database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from afs.continuous.errors import ContinuousError
from afs.continuous.kube.api.v1alpha1 import SecretKeyRef
from afs.continuous.kube.client import KubeClient, SecretError
from afs.continuous.kube.pod_security import Level
from afs.continuous.kube.training.export import DEFAULT_EXPORTER_IMAGE
from afs.continuous.logger import UsageLogger
from afs.continuous.store import is_postgres_url, open_store
from afs.continuous.store.postgres.failures import failure_kind
from afs.continuous.timeutil import Clock, utc_now

EventSink = Callable[[str, str, str], None]  # (type, reason, message)


class DatabaseUnavailableError(ContinuousError):
    """The usage database cannot be read; the message is safe to show (see
    :func:`database_failure`)."""


class DatabaseSecretError(LookupError):
    """The database Secret cannot give a usable URL; the message names the Secret and
    the problem, never any part of the value."""


def secret_reference(namespace: str, ref: SecretKeyRef) -> str:
    return f"Secret {namespace}/{ref.name} key {ref.key}"


def database_url(kube: KubeClient, namespace: str, ref: SecretKeyRef) -> str:
    """The PostgreSQL URL a Secret holds; anything else is refused without a word of its
    content. A spec's author may name any Secret of the namespace, and conditions and
    Events are read by many: a value that is not a PostgreSQL URL must not be opened as a
    SQLite path (or parsed into an error message) and so shown to them."""
    value = kube.secret_value(namespace, ref.name, ref.key).strip()
    where = f"the URL in {secret_reference(namespace, ref)}"
    if not is_postgres_url(value):
        raise DatabaseSecretError(f"{where} is not a postgresql:// URL")
    try:
        psycopg.conninfo.conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:  # only ever a URL that does not parse
        kind = failure_kind(exc)
        raise DatabaseSecretError(
            f"{where} {kind if kind.startswith('is ') else 'is malformed'}"
        ) from None
    return value


def database_failure(exc: BaseException, namespace: str, ref: SecretKeyRef) -> str:
    """A condition's and an Event's words for a database that cannot be used: the
    Secret's reference and the kind of failure, never the driver's text (which quotes
    the URL: host, port, user, database, options)."""
    if isinstance(exc, DatabaseSecretError | SecretError):  # our words: the reference
        return str(exc)
    return f"the URL in {secret_reference(namespace, ref)} {failure_kind(exc)}"


@dataclass
class OperatorConfig:
    poll_seconds: float = 30.0
    exporter_image: str = DEFAULT_EXPORTER_IMAGE
    # A check is retried at the next tick anyway: better a DatabaseUnavailable condition
    # after a few seconds than a worker thread held for the library's two minutes.
    database_retry_seconds: float = 10.0
    pod_security_level: Level = "restricted"
    """The Pod Security Standards level of every pod the operator makes or has made."""


@dataclass
class StorePool:
    """One pooled store per database URL, kept for the operator's life."""

    retry_seconds: float
    clock: Clock = utc_now
    loggers: dict[str, UsageLogger] = field(default_factory=dict)
    _opening: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _opening_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def logger_for(self, url: str) -> UsageLogger:
        """Handlers run in worker threads and every resource on a database asks for it at
        its first reconcile: opened under a lock per URL, so a thousand resources share one
        pool instead of racing to open (and leak) several, and a slow database delays only
        its own resources."""
        logger = self.loggers.get(url)
        if logger is not None:
            return logger
        with self._opening_lock:
            lock = self._opening.setdefault(url, threading.Lock())
        with lock:
            logger = self.loggers.get(url)
            if logger is None:
                store = open_store(url, retry_seconds=self.retry_seconds)
                logger = self.loggers[url] = UsageLogger(url=url, store=store, clock=self.clock)
        return logger

    def close(self) -> None:
        """Close every store's pool (at the operator's shutdown)."""
        with self._opening_lock:
            loggers, self.loggers = list(self.loggers.values()), {}
        for logger in loggers:
            logger.close()
