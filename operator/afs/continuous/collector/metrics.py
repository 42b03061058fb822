"""The collector's Prometheus metrics, in a registry of its own (one per collector, so
two in one process, as in tests, never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: the endpoints records come in by: the ``endpoint`` label's values
ENDPOINTS = ("usage", "feedback", "openai", "kserve")


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.received = Counter(
            "afs_collector_records_received",
            "Records (or KServe event halves) received, by endpoint",
            ["endpoint"],
            registry=self.registry,
        )
        self.stored = Counter(
            "afs_collector_records_stored",
            "Records committed (or, with async=1, queued), by endpoint",
            ["endpoint"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "afs_collector_records_rejected",
            "Requests refused, by endpoint and reason (invalid, too_large, unauthorized, "
            "busy, unavailable, duplicate, unsupported, body_timeout, client_gone)",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "afs_collector_feedback_applied",
            "Feedback written to a record, by outcome (updated, missing)",
            ["outcome"],
            registry=self.registry,
        )
        self.join_pending = Gauge(
            "afs_collector_join_pending",
            "KServe event halves waiting for their other half",
            registry=self.registry,
        )
        self.join_expired = Counter(
            "afs_collector_join_expired",
            "KServe event halves whose other half never came within the TTL (not stored)",
            registry=self.registry,
        )
        self.buffer_pending = Gauge(
            "afs_collector_buffer_pending",
            "Records accepted with async=1 and not yet committed",
            registry=self.registry,
        )
        self.buffer_capacity = Gauge(
            "afs_collector_buffer_capacity",
            "How many records the async buffer holds at most",
            registry=self.registry,
        )
        self.writer_starts = Gauge(
            "afs_collector_writer_starts",
            "Database writer processes started: more than one means one died and was "
            "replaced (its groups were answered 503)",
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "afs_collector_request_seconds",
            "Time to answer a request, by endpoint",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        # each endpoint's series, made once: they exist (at 0) from the start, so a rate
        # over them is never missing, and a request skips labels() (~1 µs each time)
        self.received_by = {e: self.received.labels(e) for e in ENDPOINTS}
        self.stored_by = {e: self.stored.labels(e) for e in ENDPOINTS}
        self.seconds_by = {e: self.request_seconds.labels(e) for e in ENDPOINTS}
