"""kmock's Kubernetes emulator, closer to a real API server where the operator relies on it.

- A create answers ``201 Created`` (kmock answers 200; the ``kubernetes`` client since
  version 37 reads the body of a create's 201 only, and returns None for a 200).
- A created object gets ``metadata.resourceVersion`` and ``uid`` as a real server gives
  them (kopf tests the resourceVersion when it adds or removes a finalizer).
"""

from __future__ import annotations

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
