"""CustomResourceDefinitions generated from the API models (``python -m
afs.continuous.kube.crds`` or ``afs-continuous crds``).

Kubernetes wants *structural* OpenAPI v3.0 schemas: every ``$ref`` inlined, ``nullable``
instead of ``anyOf`` with null, no titles, boolean ``exclusiveMinimum``, and
``x-kubernetes-preserve-unknown-fields`` exactly where content is free-form.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from afs.continuous.kube.api.v1alpha1 import GROUP, KINDS, VERSION, Kind

HEADER = "# Generated from afs.continuous.kube.api.v1alpha1 by afs-continuous crds; do not edit.\n"


def structural(node: Any, defs: dict[str, Any]) -> Any:
    """Turn a pydantic JSON schema node into a structural OpenAPI v3.0 schema node."""
    if isinstance(node, list):
        return [structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return structural(merged, defs)
    options = node.get("anyOf")
    if options is not None:
        kept = [o for o in options if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(kept) == 1:
            merged = {**kept[0], **rest}
            if len(kept) != len(options):
                merged["nullable"] = True
            return structural(merged, defs)
        raise ValueError(f"cannot make a structural schema of anyOf {options}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "additionalProperties" and value is False:
            continue  # with properties it is not allowed; unknown fields are pruned anyway
        elif key == "default" and value is None:
            continue
        else:
            out[key] = structural(value, defs)
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "object"
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _schema(model: Any) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))  # type: ignore[no-any-return]


def crd(kind: Kind) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": kind.short_names,
                "categories": ["afs"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.printer_columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "spec": _schema(kind.spec),
                                "status": _schema(kind.status),
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> dict[str, str]:
    """File name → YAML text, for every kind."""
    return {
        f"{kind.plural}.{GROUP}.yaml": HEADER
        + yaml.safe_dump(crd(kind), sort_keys=False, default_flow_style=False, width=100)
        for kind in KINDS
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="afs-continuous crds",
        description="Print the CustomResourceDefinitions generated from the API models, as "
        "one YAML stream (afs-continuous crds | kubectl apply --server-side -f -), or write "
        "one file per kind with --out.",
    )
    parser.add_argument("--out", metavar="DIR", help="write one file per kind into DIR")
    parser.add_argument(
        "--check", action="store_true",
        help="only compare with the files in --out (default crds); exit 1 on drift",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.out is None and not args.check:
        print("---\n".join(render().values()), end="")
        return 0
    out = Path(args.out or "crds")
    drift = []
    for name, text in render().items():
        path = out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                drift.append(str(path))
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path)
    if drift:
        print("out of date: " + ", ".join(drift), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
