"""What the controllers share: the operator's settings, the Event callback, and one pool
of usage stores for every resource that reads the usage database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from afs.continuous.kube.jobs import DEFAULT_EXPORTER_IMAGE
from afs.continuous.logger import UsageLogger
from afs.continuous.store import open_store
from afs.continuous.timeutil import Clock, utc_now

EventSink = Callable[[str, str, str], None]  # (type, reason, message)


@dataclass
class OperatorConfig:
    poll_seconds: float = 30.0
    exporter_image: str = DEFAULT_EXPORTER_IMAGE
    # A check is retried at the next tick anyway: better a DatabaseUnavailable condition
    # after a few seconds than a worker thread held for the library's two minutes.
    database_retry_seconds: float = 10.0


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
