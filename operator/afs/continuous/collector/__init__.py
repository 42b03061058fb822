"""The collector: usage and feedback over HTTP, from any model server.

``afs-continuous collect`` serves a native JSON/NDJSON API, KServe's payload-logger
CloudEvents and OpenAI-style request/response pairs, and writes them through the usage
stores (see docs/collector.md)."""

from afs.continuous.collector.app import Collector, CollectorSettings
from afs.continuous.collector.metrics import CollectorMetrics

__all__ = ["Collector", "CollectorMetrics", "CollectorSettings"]
