"""kmock's Kubernetes emulator, closer to a real API server where the operator relies on it.

- A create answers ``201 Created`` (kmock answers 200; the ``kubernetes`` client since
  version 37 reads the body of a create's 201 only, and returns None for a 200).
- A created object gets ``metadata.resourceVersion`` and ``uid`` as a real server gives
  them (kopf tests the resourceVersion when it adds or removes a finalizer).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from typing import Any

import kmock

_versions = itertools.count(1000)


class ApiServerEmulator(kmock.KubernetesEmulator):
    async def _handle(self, request: Any) -> Any:
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            metadata = request.data.setdefault("metadata", {})
            metadata.setdefault("resourceVersion", str(next(_versions)))
            metadata.setdefault("uid", str(uuid.uuid4()))
        return await super()._handle(request)

    async def _serve_create(self, request: Any) -> Any:
        created = await super()._serve_create(request)
        return kmock.Response(status=201, payload=created)  # type: ignore[attr-defined]


async def stop_operator(task: asyncio.Task[Any], stop: asyncio.Event) -> None:
    """Stop a kopf operator started in this event loop.

    Once its own tasks are done, kopf waits five seconds for every task started after it
    before cancelling them, and the emulator's handlers of its watch streams are such
    tasks (they wait for the next event of a stream nobody reads): cancelled at once
    instead, each scenario ends four seconds sooner."""
    stop.set()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 20)
