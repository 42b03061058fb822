"""What a real API server would prune from a custom object, given its CRD's schema.

The emulator stores whatever it is sent; a real API server drops every field its
structural schema does not declare (unless the schema preserves unknown fields there).
A status field written by the operator, or anything kopf keeps in a status, that is not in
the schema would silently vanish in a cluster while every emulator test passed.
"""

from __future__ import annotations

from typing import Any

from afs.continuous.kube import crds
from afs.continuous.kube.api import v1alpha1

ROOT_FIELDS = {"apiVersion", "kind", "metadata"}  # never pruned by the CRD schema


def schema_of(kind: str) -> dict[str, Any]:
    definition = next(crds.crd(k) for k in v1alpha1.KINDS if k.kind == kind)
    schema: dict[str, Any] = definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def pruned_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """The paths in ``value`` that pruning by ``schema`` would remove."""
    if isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, dict):
            return []
        return [p for i, v in enumerate(value) for p in pruned_fields(v, items, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return []
    properties: dict[str, Any] = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    found = []
    for key, child in value.items():
        where = f"{path}.{key}" if path else key
        if not path and key in ROOT_FIELDS:
            continue
        if key in properties:
            found += pruned_fields(child, properties[key], where)
        elif isinstance(additional, dict):
            found += pruned_fields(child, additional, where)
        elif not preserve:
            found.append(where)
    return found
