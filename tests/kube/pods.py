"""Pod templates that meet the operator's default pod security level (restricted), for
tests whose subject is something else."""

from __future__ import annotations

import copy
from typing import Any

POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def restricted(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A pod template of ``containers`` (each given the restricted settings it lacks)."""
    return {
        "spec": {
            "securityContext": copy.deepcopy(POD_SECURITY),
            "containers": [
                {"securityContext": copy.deepcopy(CONTAINER_SECURITY), **copy.deepcopy(c)}
                for c in containers
            ],
            **spec,
        }
    }
