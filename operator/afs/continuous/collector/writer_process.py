"""The collector's database writer as a process of its own, fed over a pipe.

Why a process: the collector checks records on its event loop and commits them in a
writer. As a thread, that writer takes the interpreter lock back after each call into
SQLite or libpq, and while the loop is busy checking the next requests every take-back
waits out the loop's switch interval (5 ms): under load a group of 500 records took
13 ms whatever its size, and that wait, not the machine, set the collector's pace. A
process has an interpreter of its own. The loop hands it a group (its records as rows,
pickled: about 0.2 µs a record) and goes on checking while the child writes.

The pipe carries frames, a 4-byte little-endian length and a pickle, between the two
ends of this module and nothing else (the child moves its stdout aside before anything
could print into it). The parent's first frame holds the settings (the database URL
travels here, not on the command line where ``ps`` shows it); the child answers
``("ready",)`` once its store is open. Then, for each group, rows in and one answer out:
``("ok", ids)``, ``("invalid", field, value, rule)`` (a supplied id that exists),
``("unavailable", message)`` (a failure that may pass) or ``("failed", message)``.

Two groups may be in the pipe at once: the second is read while the first commits, and
the answers come back in order. (Committing two PostgreSQL groups at once, on two
connections, was tried: on 2 cores it was slower, about 65,000 records/s against
70,000 in two alternating pairs of runs, the server's work competing with the
collector's.) A child that dies, or a pipe that
breaks, fails the groups it holds as unavailable: their requests answer 503 and are
sent again. Had the child committed one just before dying, the retry writes it twice,
as when a database connection drops between a commit and its acknowledgement; records
that carry their own ids are never doubled. The next group starts a new child.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from typing import IO, Any

from afs.continuous.buffered import is_transient
from afs.continuous.errors import ContinuousError, InvalidFieldError, StoreUnavailableError
from afs.continuous.records import RecordRow, records_from_rows
from afs.continuous.store import UsageStore, open_store

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<I")
#: the pipes' capacity asked for (Linux): a group's frame then fits whole, and the loop
#: writes it at once instead of 64 KiB each time it comes round to the pipe
PIPE_BYTES = 1 << 20
#: how long a child that closed its output may take to exit before it is killed
EXIT_GRACE_S = 5.0
#: how often the child's SQLite store copies its write-ahead log into the database
CHECKPOINT_EVERY_S = 0.25


class WriterFailedError(ContinuousError):
    """The writer's store failed in a way that will not pass by retrying (the child
    logged the traceback)."""


class WriterStoppedError(StoreUnavailableError):
    """The child exited (or was stopped) before it answered: a group it held may or may
    not have been committed, so it is to be sent again."""


class _ChildProtocol(asyncio.SubprocessProtocol):
    """The child's answers, settled on their groups' futures as the bytes arrive.

    Read here rather than by a task awaiting a stream: under load each hand-off between
    callbacks and tasks waits a turn of the event loop, behind every request that came
    in meanwhile, and a group's answer went through four of them before its requests
    could answer. Now it goes through two (this future's callback, then the requests').
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answers: deque[asyncio.Future[Any]] = deque()  # one per frame sent, in order
        self.finished: asyncio.Future[int] = loop.create_future()  # its exit code
        self.transport: asyncio.SubprocessTransport | None = None
        self.broken = False  # it answered out of turn: stopped, and nothing more is read
        self._buffer = bytearray()
        self._overdue: asyncio.TimerHandle | None = None  # a kill, if it outlives its output

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.broken:
            return
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buffer)
            end = _HEADER.size + length
            if len(buffer) < end:
                return
            try:
                answer = pickle.loads(buffer[_HEADER.size : end])
                waiting = self.answers.popleft()
            except Exception:  # not an answer to a group sent: no later one could be trusted
                log.exception("collector: the database writer answered out of turn; stopping it")
                self.broken = True
                self.kill()
                return
            del buffer[:end]
            if not waiting.done():  # its caller may have been cancelled
                _settle(waiting, answer)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:  # it can no longer answer: it is exiting, or must not go on writing
            self._overdue = asyncio.get_running_loop().call_later(EXIT_GRACE_S, self.kill)

    def connection_lost(self, exc: Exception | None) -> None:
        """The child exited and its pipes closed: fail the groups it never answered."""
        assert self.transport is not None
        if self._overdue is not None:
            self._overdue.cancel()
        code = self.transport.get_returncode()
        self.transport.close()
        lost = WriterStoppedError(
            f"the collector's database writer stopped (exit code {code}); nothing of this "
            "group is known to be written, retry"
        )
        while self.answers:
            waiting = self.answers.popleft()
            if not waiting.done():
                waiting.set_exception(lost)
        self.finished.set_result(code if code is not None else -1)

    def kill(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(ProcessLookupError):
                self.transport.kill()


@dataclass
class _Child:
    transport: asyncio.SubprocessTransport
    protocol: _ChildProtocol

    @property
    def pid(self) -> int:
        return self.transport.get_pid()

    @property
    def running(self) -> bool:
        return (
            self.transport.get_returncode() is None
            and not self.protocol.finished.done()
            and not self.protocol.broken
        )

    def send(self, frame: bytes) -> asyncio.Future[Any]:
        """Hand the child a frame; the future its answer settles. Written whole into the
        pipe's buffer: a caller cancelled meanwhile leaves the stream in step (its
        answer is read and dropped), and at most ``in_flight`` groups wait there."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.protocol.answers.append(answer)
        stdin = self.transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.write(frame)  # a child gone meanwhile fails the answer when its pipes close
        return answer

    def kill(self) -> None:
        self.protocol.kill()

    async def wait(self) -> int:
        """Its exit code (negative: the signal), once it exited and its pipes closed."""
        return await asyncio.shield(self.protocol.finished)


class ProcessWriter:
    """Commits groups of records in a child process (see the module's docstring)."""

    #: groups handed to the child before the first is answered: the next one is in the
    #: pipe when the child finishes, instead of a round trip through the loop later
    in_flight = 2

    def __init__(
        self, target: str, *, retry_seconds: float | None = None, start_timeout_s: float = 60.0
    ) -> None:
        self._settings = {"target": target, "retry_seconds": retry_seconds}
        self._start_timeout_s = start_timeout_s
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self.starts = 0  # children started: more than one means one died (or was stopped)

    async def start(self) -> None:
        """Start the child and wait until its store is open."""
        await self._running()

    def submit(self, rows: list[RecordRow]) -> asyncio.Future[list[str]]:
        frame = _frame(rows)
        child = self._child
        if child is not None and child.running:
            return child.send(frame)
        return asyncio.ensure_future(self._send_once_running(frame))

    async def _send_once_running(self, frame: bytes) -> list[str]:
        child = await self._running()
        ids: list[str] = await child.send(frame)
        return ids

    async def close(self) -> None:
        """Let the child answer every group it was handed and exit (killed after 30 s)."""
        async with self._starting:
            child, self._child = self._child, None
            if child is None:
                return
            stdin = child.transport.get_pipe_transport(0)
            if stdin is not None:
                stdin.close()  # after what it holds is written
            try:
                await asyncio.wait_for(child.wait(), timeout=30)
            except TimeoutError:
                log.error("collector: the database writer did not exit in 30 s; killed")
                child.kill()
                await child.wait()

    async def _running(self) -> _Child:
        if self._child is not None and self._child.running:
            return self._child
        async with self._starting:
            if self._child is not None:
                if self._child.running:
                    return self._child
                code = await self._child.wait()  # a dead child's groups are failed first
                log.warning(
                    "collector: the database writer exited (exit code %s); starting another",
                    code,
                )
            self._child = await self._spawn()
            self.starts += 1
            return self._child

    async def _spawn(self) -> _Child:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _ChildProtocol(loop), sys.executable, "-m", __name__,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
        )  # fmt: skip
        child = _Child(transport, protocol)
        try:
            await asyncio.wait_for(child.send(_frame(self._settings)), self._start_timeout_s)
        except (WriterStoppedError, TimeoutError) as exc:  # it exited, or never answered
            child.kill()
            code = await child.wait()
            raise StoreUnavailableError(
                f"the collector's database writer did not start (exit code {code}); retry"
            ) from exc
        except Exception:  # what kept its store from opening, as the child reported it
            child.kill()
            await child.wait()
            raise
        return child


def freeze_startup_objects() -> None:
    """Leave what start-up made (modules, classes, the app) out of garbage collection.

    None of it is ever garbage, yet every full collection walked all of it: under load,
    one took 16 ms of the event loop's time. Called once a process is ready to serve.
    """
    gc.collect()
    gc.freeze()


def _frame(value: Any) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _settle(waiting: asyncio.Future[Any], answer: Any) -> None:
    """An answer onto its future: a group's ids (or the start's ``ready``), or the error."""
    if answer[0] == "ok":
        waiting.set_result(answer[1])
    elif answer[0] == "ready":
        waiting.set_result(None)
    else:
        waiting.set_exception(_error(answer))


def _error(answer: Any) -> Exception:
    kind, *details = answer
    if kind == "invalid":
        return InvalidFieldError(*details)
    if kind == "unavailable":
        return StoreUnavailableError(details[0])
    return WriterFailedError(details[0])


# --- the child --------------------------------------------------------------------------


def _answer_for(exc: Exception) -> tuple[Any, ...]:
    if isinstance(exc, InvalidFieldError):
        return ("invalid", exc.field, exc.value, exc.rule)
    if is_transient(exc):
        return ("unavailable", str(exc))
    log.error("collector writer: the store failed", exc_info=exc)
    return ("failed", f"{type(exc).__name__}: {exc}")


def _read(stream: IO[bytes]) -> Any:
    """The next frame, or None at the end of the stream (the parent closed it or died)."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack(header)
    data = stream.read(length)
    return None if len(data) < length else pickle.loads(data)


def _enlarge(*fds: int) -> None:
    if sys.platform != "linux":
        return
    import fcntl

    for fd in fds:
        with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _yield_to_the_event_loop() -> None:
    """Run as a batch task (Linux): its wake-up then never preempts the process that
    woke it. Without it the collector's event loop, handing over a group, sat in that
    write while the child it had woken ran on its core: a fifth of the loop's time under
    single-record load. The child keeps its fair share of the CPU."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _open(settings: dict[str, Any]) -> UsageStore:
    store = open_store(settings["target"], retry_seconds=settings["retry_seconds"])
    from afs.continuous.store.sqlite import SQLiteUsageStore

    if isinstance(store, SQLiteUsageStore):  # its commits then never wait for one
        store.checkpoint_in_background(CHECKPOINT_EVERY_S)
    return store


def serve_pipe(inbound: IO[bytes], outbound: IO[bytes]) -> int:
    """Open the store the first frame names, then commit each group that follows."""

    def send(answer: tuple[Any, ...]) -> None:
        outbound.write(_frame(answer))
        outbound.flush()

    settings = _read(inbound)
    if settings is None:
        return 0
    try:
        store = _open(settings)
    except Exception as exc:
        send(_answer_for(exc))
        return 1
    send(("ready",))
    freeze_startup_objects()
    try:
        while (rows := _read(inbound)) is not None:
            try:
                send(("ok", store.insert(records_from_rows(rows))))
            except Exception as exc:
                send(_answer_for(exc))
    finally:
        store.close()
    return 0


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):  # it ends when the parent closes the pipe,
        signal.signal(signum, signal.SIG_IGN)  # after the group it holds (Ctrl-C reaches both)
    _yield_to_the_event_loop()
    outbound = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() and stray output land in the log, never in the pipe
    _enlarge(0, outbound.fileno())
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return serve_pipe(sys.stdin.buffer, outbound)
    except BrokenPipeError:  # the parent is gone: nobody is left to answer
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
