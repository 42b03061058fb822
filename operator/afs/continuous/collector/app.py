"""The collector's HTTP service: usage and feedback in, records out, nothing lost quietly.

Every write is acknowledged only once it is committed (200), or, with ``?async=1``, once
it is in the bounded buffer of a :class:`~afs.continuous.buffered.BufferedUsageLogger`
(202: a crash before its commit loses it; the buffer's writer retries the database until
then). A full buffer, a full join buffer or an unreachable database answers 503 with
``Retry-After``. A batch is checked whole before anything is written, and written in one
transaction: all of it or none. Errors are JSON with the field (and the record's index)
at fault; no response ever carries a stack trace.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientPayloadError, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from afs.continuous.buffered import BufferedUsageLogger, BufferFullError, is_transient
from afs.continuous.chat import EXTRA_KEYS, chat_records
from afs.continuous.collector.commits import GroupCommitter
from afs.continuous.collector.join import JoinBuffer, JoinBufferFullError
from afs.continuous.collector.kserve_events import (  # re-exported: tests and users read them here
    KSERVE_REQUEST as KSERVE_REQUEST,
    KSERVE_RESPONSE as KSERVE_RESPONSE,
    kserve_half,
    kserve_record,
)
from afs.continuous.collector.metrics import CollectorMetrics
from afs.continuous.collector.payloads import (
    PayloadError,
    parse_json,
)
from afs.continuous.collector.refusals import (
    ClientGoneError,
    RequestRefusedError,
    parse_json_or_refuse,
)
from afs.continuous.collector.writer import StoreWriter, ThreadWriter
from afs.continuous.errors import (
    InvalidBatchError,
    InvalidFieldError,
)
from afs.continuous.logger import UsageLogger
from afs.continuous.record_checks import check_correction
from afs.continuous.records import (
    MAX_FEEDBACK_TEXT_CHARS,
    check_feedback,
    check_optional_text,
    check_record_id,
)

log = logging.getLogger(__name__)

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/jsonlines"})
#: paths answered without a token (probes and scrapes carry none)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass(frozen=True)
class CollectorSettings:
    """How the collector guards itself. ``token`` None means no authentication, which
    the command line allows only when asked for explicitly."""

    token: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_records: int = 10_000
    join_ttl_s: float = 60.0
    join_max_pending: int = 10_000
    async_max_pending: int = 100_000
    retry_after_s: int = 5
    ready_timeout_s: float = 2.0
    #: the whole body must arrive within this; a client dripping it holds a connection
    body_timeout_s: float = 30.0


class Collector:
    """The handlers and what they share: the logger, the join buffer, the metrics."""

    def __init__(
        self,
        logger: UsageLogger,
        settings: CollectorSettings | None = None,
        *,
        metrics: CollectorMetrics | None = None,
        writer: StoreWriter | None = None,
    ) -> None:
        """``writer`` commits what the endpoints check (default: the logger's store, in a
        worker thread); ``afs-continuous collect`` gives a
        :class:`~afs.continuous.collector.writer_process.ProcessWriter`."""
        self.logger = logger
        self.settings = settings or CollectorSettings()
        self.metrics = metrics or CollectorMetrics()
        self.join = JoinBuffer(
            max_pending=self.settings.join_max_pending, ttl_s=self.settings.join_ttl_s
        )
        self._buffered: BufferedUsageLogger | None = None
        self.writer: StoreWriter = writer if writer is not None else ThreadWriter(logger.store)
        self.committer = GroupCommitter(self.writer)
        self.metrics.buffer_capacity.set(self.settings.async_max_pending)

    # --- applications ---------------------------------------------------------------

    def app(self, *, authenticate: bool = True, kserve_only: bool = False) -> web.Application:
        """The service. ``kserve_only`` serves just the KServe endpoint and the probes, for
        an in-cluster listener KServe's logger (which sends no token) can reach."""
        middlewares = [self._errors]
        if authenticate and self.settings.token is not None:
            middlewares.append(self._auth)
        app = web.Application(client_max_size=self.settings.max_body_bytes, middlewares=middlewares)
        routes = [
            web.get("/healthz", self._healthz),
            web.get("/readyz", self._readyz),
            web.get("/metrics", self._metrics),
            web.post("/v1/kserve", self._kserve),
        ]
        if not kserve_only:
            routes += [
                web.post("/v1/usage", self._usage),
                web.post("/v1/feedback", self._feedback),
                web.post("/v1/openai", self._openai),
            ]
        app.add_routes(routes)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        await asyncio.to_thread(self.close)

    async def start(self) -> None:
        """Start the writer (a process writer's child), so no request waits for it."""
        await self.writer.start()

    async def stop_writing(self) -> None:
        """Stop the writer once the requests it serves have been answered (after the
        apps' cleanup: aiohttp lets handlers finish before it)."""
        await self.writer.close()

    def close(self) -> None:
        """Flush what ``async=1`` queued (graceful shutdown), then stop its writer."""
        buffered, self._buffered = self._buffered, None
        if buffered is not None:
            buffered.close()

    # --- middlewares ----------------------------------------------------------------

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        endpoint = _endpoint(request)
        started = time.perf_counter()
        try:
            return await handler(request)
        except RequestRefusedError as exc:
            self.metrics.rejected.labels(endpoint, exc.reason).inc()
            return _error(exc.status, exc.message, headers=exc.headers, **exc.details)
        except web.HTTPRequestEntityTooLarge:
            self.metrics.rejected.labels(endpoint, "too_large").inc()
            return _error(
                413, f"the body is larger than {self.settings.max_body_bytes} bytes; "
                "send fewer records per request",
            )  # fmt: skip
        except web.HTTPException as exc:  # 404, 405 from the router
            return _error(exc.status, exc.reason)
        except ClientGoneError:  # theirs, not ours: a line, not a traceback
            self.metrics.rejected.labels(endpoint, "client_gone").inc()
            log.info(
                "collector: %s %s: the client left before its body arrived; nothing written",
                request.method, request.path,
            )  # fmt: skip
            return _error(400, "the connection closed before the body arrived")
        except Exception:  # a fault of ours: logged here, never shown
            log.exception("collector: %s %s failed", request.method, request.path)
            return _error(500, "internal error; the collector's log has the details")
        finally:
            seconds = self.metrics.seconds_by.get(endpoint)
            if seconds is not None:
                seconds.observe(time.perf_counter() - started)

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        token = self.settings.token
        assert token is not None  # installed only with one
        if request.path in OPEN_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "")
        scheme, _, credentials = given.partition(" ")
        # header bytes that are not UTF-8 arrive as surrogates: compared, never an error
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credentials.strip().encode("utf-8", "surrogateescape"), token.encode()
        ):
            raise RequestRefusedError(
                401, "a bearer token is required (Authorization: Bearer <token>)"
                if not given else "the bearer token is not valid",
                reason="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="afs-collector"'},
            )  # fmt: skip
        return await handler(request)

    # --- probes and metrics -----------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        """Ready when the database answers within ``ready_timeout_s``."""
        try:
            version = await asyncio.wait_for(
                asyncio.to_thread(self.logger.store.schema_version),
                self.settings.ready_timeout_s,
            )
        except Exception as exc:  # any failure: not ready, and say why
            reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
            return _error(503, f"the database is not reachable: {reason}")
        return web.json_response({"status": "ready", "schema_version": version})

    async def _metrics(self, request: web.Request) -> web.Response:
        self.metrics.join_pending.set(len(self.join))
        buffered = self._buffered
        self.metrics.buffer_pending.set(buffered.pending if buffered is not None else 0)
        self.metrics.writer_starts.set(self.writer.starts)
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- native API -------------------------------------------------------------------

    async def _usage(self, request: web.Request) -> web.Response:
        """One record (JSON) or many (NDJSON), all or none; answers their ids."""
        items = await self._json_items(request, what="record")
        self.metrics.received_by["usage"].inc(len(items))
        try:
            return await self._store("usage", items, queued=_flag(request, "async"))
        except RequestRefusedError as exc:  # an NDJSON record refused: say its line too
            lines = request.get(_LINES)
            index = exc.details.get("index")
            if lines is not None and isinstance(index, int) and 0 <= index < len(lines):
                exc.details["line"] = lines[index]
            raise

    async def _feedback(self, request: web.Request) -> web.Response:
        """``{id, feedback, text, correction}``, one (JSON) or many (NDJSON); ``correction``
        is the answer the model should have given (text or an assistant message). Every
        item is checked
        before any is written; a record that does not exist is reported, not an error of
        the batch (404 when it was the only one)."""
        items = await self._json_items(request, what="feedback")
        self.metrics.received_by["feedback"].inc(len(items))
        checked = [_feedback_item(index, item) for index, item in enumerate(items)]
        results = await self._run(self._apply_feedback, checked)
        updated = [i for i, ok in results if ok]
        missing = [i for i, ok in results if not ok]
        self.metrics.feedback.labels("updated").inc(len(updated))
        self.metrics.feedback.labels("missing").inc(len(missing))
        if len(checked) == 1 and missing:
            raise RequestRefusedError(404, f"no record has id {missing[0]!r}", reason="missing")
        return web.json_response({"updated": len(updated), "missing": missing})

    def _apply_feedback(self, items: list[FeedbackItem]) -> list[tuple[str, bool]]:
        record = self._buffered.record_feedback if self._buffered else self.logger.record_feedback
        return [(rid, record(rid, value, text, fix)) for rid, value, text, fix in items]

    async def _openai(self, request: web.Request) -> web.Response:
        """A chat-completions (or completions) request and its response, as a gateway or
        proxy forwards them: ``{request, response, latency_ms?, id?, timestamp?, model?,
        expert?, assignment_key?}``, a record per choice (``n > 1``: the ids of all are
        answered, a given ``id`` taken by the first and suffixed ``-1``, ``-2``… for the
        others); ``model`` (or ``?model=``) names the arm, else the
        request's model, else the response's. A chat keeps its whole conversation and the
        tools offered. The assignment key (stored hashed) is ``assignment_key``, else the
        request's ``safety_identifier`` or ``user``: OpenAI's end-user id, what a gateway
        routes a user by."""
        body = parse_json_or_refuse(await self._body(request), "the body")
        if not isinstance(body, dict):
            raise RequestRefusedError(400, "the body must be a JSON object", reason="invalid")
        unknown = sorted(set(body) - _OPENAI_KEYS)
        if unknown:
            raise RequestRefusedError(
                400, f"unknown field {unknown[0]!r}; expected {sorted(_OPENAI_KEYS)}",
                reason="invalid", field=unknown[0],
            )  # fmt: skip
        for key in ("request", "response"):
            if key not in body:
                raise RequestRefusedError(400, f"{key} is required", reason="invalid", field=key)
        extra = {key: body[key] for key in EXTRA_KEYS if key in body}
        if extra.get("expert") is None and request.query.get("expert"):
            extra["expert"] = request.query["expert"]
        try:
            records = chat_records(
                body["request"], body["response"],
                model=request.query.get("model") or body.get("model"), extra=extra,
            )  # fmt: skip
        except PayloadError as exc:
            raise RequestRefusedError(400, str(exc), reason="invalid") from exc
        self.metrics.received_by["openai"].inc(len(records))
        return await self._store("openai", records, queued=_flag(request, "async"))

    # --- KServe payload logger ----------------------------------------------------------

    async def _kserve(self, request: web.Request) -> web.Response:
        """A request or response CloudEvent; the pair becomes one record (id = ``ce-id``)."""
        key, half = kserve_half(request.headers, await self._body(request))
        self.metrics.received_by["kserve"].inc()
        if not (request.query.get("model") or half.attributes.get("inferenceservicename")):
            raise RequestRefusedError(  # refused as it comes: a pair of it would be lost
                400, "no model to record: set ?model= on the logger URL or send "
                "ce-inferenceservicename", reason="invalid", field="model",
            )  # fmt: skip
        before = self.join.expired
        try:
            outcome = self.join.offer(key, half)
        except JoinBufferFullError as exc:
            raise self._busy(str(exc)) from exc
        finally:
            self.metrics.join_expired.inc(self.join.expired - before)
            self.metrics.join_pending.set(len(self.join))
        if outcome == "duplicate":
            self.metrics.rejected.labels("kserve", "duplicate").inc()
            return web.json_response({"status": "duplicate", "id": key})
        if outcome == "waiting":
            return web.json_response({"status": "waiting", "id": key}, status=202)
        try:
            record = kserve_record(key, outcome, request.query)
            return await self._store("kserve", [record], queued=False, duplicate_ok=True)
        except RequestRefusedError as exc:
            if exc.status >= 500:  # stored nothing: let KServe's retry pair it again
                self.join.forget(key)
            raise

    # --- writing ------------------------------------------------------------------------

    async def _store(
        self, endpoint: str, items: list[Any], *, queued: bool, duplicate_ok: bool = False
    ) -> web.Response:
        try:
            if queued:
                ids = await self._run(self._queue, items)
            else:  # checked here, written with concurrent requests' records in one go
                ids = await self._unless_unavailable(
                    self.committer.commit(self.logger.build_rows(items))
                )
        except InvalidBatchError as exc:
            cause = exc.cause
            raise RequestRefusedError(
                400, str(exc) if len(items) > 1 else str(cause), reason="invalid",
                field=cause.field, index=exc.index,
            ) from exc  # fmt: skip
        except InvalidFieldError as exc:  # the store's: a supplied id that exists already
            if duplicate_ok and exc.field == "id":
                self.metrics.rejected.labels(endpoint, "duplicate").inc()
                return web.json_response({"status": "duplicate", "id": exc.value})
            raise RequestRefusedError(409, str(exc), reason="conflict", field=exc.field) from exc
        except BufferFullError as exc:
            raise self._busy(str(exc)) from exc
        self.metrics.stored_by[endpoint].inc(len(ids))
        if queued:
            return web.json_response({"ids": ids, "queued": True}, status=202)
        return web.json_response({"ids": ids})

    def _queue(self, items: list[Any]) -> list[str]:
        if self._buffered is None:
            self._buffered = self.logger.buffered(
                max_pending=self.settings.async_max_pending, on_full="raise"
            )
        return self._buffered.log_many(items)

    async def _run(self, action: Callable[[Any], Any], argument: Any) -> Any:
        """Blocking store work off the event loop."""
        return await self._unless_unavailable(asyncio.to_thread(action, argument))

    async def _unless_unavailable(self, work: Awaitable[Any]) -> Any:
        """A database that cannot be reached (or is locked past its timeout) becomes 503
        with Retry-After."""
        try:
            return await work
        except Exception as exc:
            if is_transient(exc):
                raise self._unavailable(exc) from exc
            raise

    def _busy(self, message: str) -> RequestRefusedError:
        return RequestRefusedError(
            503, f"{message}; retry later", reason="busy",
            headers={"Retry-After": str(self.settings.retry_after_s)},
        )  # fmt: skip

    def _unavailable(self, exc: BaseException) -> RequestRefusedError:
        log.warning("collector: the database is unavailable: %s", exc)
        return RequestRefusedError(
            503, "the database is unavailable; nothing was written, retry later",
            reason="unavailable", headers={"Retry-After": str(self.settings.retry_after_s)},
        )  # fmt: skip

    async def _body(self, request: web.Request) -> bytes:
        """The whole body, or 408 once ``body_timeout_s`` has passed without it."""
        timeout = self.settings.body_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await request.read()
        except TimeoutError:
            raise RequestRefusedError(
                408, f"the body did not arrive within {timeout:g} s; send it whole, at once",
                reason="body_timeout", headers={"Connection": "close"},
            ) from None  # fmt: skip
        except (ConnectionResetError, ClientPayloadError) as exc:
            raise ClientGoneError from exc

    async def _json_items(self, request: web.Request, *, what: str) -> list[Any]:
        """One JSON object, or NDJSON lines of them (blank lines skipped)."""
        raw = await self._body(request)
        kind = request.content_type
        if kind == "application/json":
            item = parse_json_or_refuse(raw, "the body")
            if not isinstance(item, dict):
                raise RequestRefusedError(
                    400, f"the body must be one {what} as a JSON object; send many as NDJSON "
                    "(Content-Type: application/x-ndjson), one object per line",
                    reason="invalid",
                )  # fmt: skip
            return [item]
        if kind not in NDJSON_TYPES:
            raise RequestRefusedError(
                415, f"Content-Type must be application/json (one {what}) or "
                f"application/x-ndjson (one per line), not {kind or 'missing'}",
                reason="unsupported",
            )  # fmt: skip
        items: list[Any] = []
        numbers: list[int] = []
        request[_LINES] = numbers  # where each item came from, for a refusal to name
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line or line.isspace():
                continue
            item = _parse_line(line, number)
            numbers.append(number)
            if not isinstance(item, dict):
                raise RequestRefusedError(
                    400, f"line {number}: each line must be one {what} as a JSON object",
                    reason="invalid", line=number,
                )  # fmt: skip
            items.append(item)
            if len(items) > self.settings.max_records:
                raise RequestRefusedError(
                    413, f"more than {self.settings.max_records} {what}s in one request; "
                    "split the batch", reason="too_large",
                )  # fmt: skip
        if not items:
            raise RequestRefusedError(400, f"the body holds no {what}", reason="invalid")
        return items


#: the request's key for the NDJSON line of each item (an aiohttp request is a mapping)
_LINES = web.RequestKey("afs_ndjson_lines", list[int])
_OPENAI_KEYS = frozenset(
    {"request", "response", "latency_ms", "id", "timestamp", "model", "expert", "assignment_key"}
)
_FEEDBACK_KEYS = frozenset({"id", "feedback", "text", "correction"})


def _endpoint(request: web.Request) -> str:
    """The metrics' label for a request: its route's last segment, ``other`` for a path no
    route serves (labelled by path, anyone could grow the series without bound)."""
    resource = request.match_info.route.resource
    if resource is None:
        return "other"
    return resource.canonical.rsplit("/", 1)[-1] or "root"


def _parse_line(line: bytes, number: int) -> Any:
    """A line of NDJSON. Its number goes into the message only if it is refused (parsed
    again then: a well-formed batch is the common case, and its lines' labels cost)."""
    try:
        return parse_json(line, what="a line")
    except PayloadError:
        try:
            return parse_json(line, what=f"line {number}")
        except PayloadError as exc:  # raises, naming the line in the message and the answer
            raise RequestRefusedError(400, str(exc), reason="invalid", line=number) from exc


FeedbackItem = tuple[str, int, str | None, dict[str, Any] | None]


def _feedback_item(index: int, item: dict[str, Any]) -> FeedbackItem:
    where = f"feedback {index}: " if index else ""
    unknown = sorted(set(item) - _FEEDBACK_KEYS)
    if unknown:
        raise RequestRefusedError(
            400, f"{where}unknown field {unknown[0]!r}; expected id, feedback, text, correction",
            reason="invalid", field=unknown[0], index=index,
        )  # fmt: skip
    try:
        if "id" not in item or "feedback" not in item:
            missing = "id" if "id" not in item else "feedback"
            raise InvalidFieldError(missing, None, "is required")
        record_id = check_record_id(item["id"])
        value = check_feedback(item["feedback"])
        text = check_optional_text("text", item.get("text"), max_chars=MAX_FEEDBACK_TEXT_CHARS)
        correction = item.get("correction")
        fix = None if correction is None else check_correction(correction)
    except InvalidFieldError as exc:
        raise RequestRefusedError(
            400, f"{where}{exc}", reason="invalid", field=exc.field, index=index
        ) from exc
    return record_id, value, text, fix


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "0").lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no", ""):
        return False
    raise RequestRefusedError(400, f"?{name}= must be 1 or 0, not {value!r}", reason="invalid")


def _error(status: int, message: str, *, headers: Mapping[str, str] | None = None,
           **details: Any) -> web.Response:  # fmt: skip
    return web.json_response({"error": message, **details}, status=status, headers=headers)
