"""Render the plain ``kubectl apply`` install from the Helm chart.

Writes ``manifests/install.yaml``: the ``afs-system`` Namespace, the CRDs and the chart's
templates rendered with its default values (release ``afs-continuous``), and refreshes
the chart's copy of the CRDs from the API models. Both are committed; a test fails when
either drifts, so the chart, the manifests and ``crds/`` carry the same definitions.

Needs helm-python-sdk (a test dependency): Helm's own Go library, no ``helm`` binary.

Usage: python scripts/render_manifests.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from afs.continuous.kube import crds

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "afs-continuous"
INSTALL = ROOT / "manifests" / "install.yaml"
RELEASE, NAMESPACE = "afs-continuous", "afs-system"
HEADER = (
    "# Rendered from charts/afs-continuous by scripts/render_manifests.py; do not edit.\n"
    f"# kubectl apply --server-side -f manifests/install.yaml  (namespace {NAMESPACE})\n"
)
# Apply order: what others refer to first.
KIND_ORDER = (
    "Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
    "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment",
)  # fmt: skip


def render_install() -> str:
    import helm_python as helm

    chart = helm.Chart.load(CHART)
    documents = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        *(yaml.safe_load(text) for _, text in sorted(crds.render().items())),
    ]
    for path, text in sorted(chart.render(name=RELEASE, namespace=NAMESPACE).items()):
        if path.endswith(".yaml"):
            documents += [d for d in yaml.safe_load_all(text) if d]
    documents.sort(key=lambda d: KIND_ORDER.index(d["kind"]))  # stable: same kind keeps order
    return HEADER + yaml.safe_dump_all(documents, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only compare with the committed files; exit 1 on drift",
    )
    args = parser.parse_args(argv)
    chart_crds = ["--out", str(CHART / "crds"), *(["--check"] if args.check else [])]
    if crds.main(chart_crds) != 0:
        return 1
    text = render_install()
    if args.check:
        if not INSTALL.exists() or INSTALL.read_text(encoding="utf-8") != text:
            print(f"out of date: {INSTALL.relative_to(ROOT)}", file=sys.stderr)
            return 1
        return 0
    INSTALL.parent.mkdir(exist_ok=True)
    INSTALL.write_text(text, encoding="utf-8")
    print(INSTALL.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
