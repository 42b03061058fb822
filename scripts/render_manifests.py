"""Render the plain ``kubectl apply`` install from the Helm chart.

Writes ``manifests/install.yaml``: the ``afs-system`` Namespace, the CRDs and the chart's
templates rendered with its default values (release ``afs-continuous``), and refreshes
the chart's copy of the CRDs from the API models. Also writes
``manifests/argocd/argocd-cm.yaml``, the Argo CD health checks of
``manifests/argocd/health/`` (each kind's script after the shared prelude) as a patch of
Argo CD's ConfigMap, and the Grafana dashboard of ``scripts/dashboard.py`` (into
``dashboards/`` and the chart). All are committed; a
test fails when any drifts, so the chart, the manifests and ``crds/`` carry the same
definitions.

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
ARGOCD = ROOT / "manifests" / "argocd"
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


def render_argocd_patch() -> str:
    """Each health check under its ``resource.customizations.health.<group>_<Kind>`` key,
    the shared prelude at its head (Argo CD runs each as a script of its own)."""
    lines = [
        "# Rendered from manifests/argocd/health/ by scripts/render_manifests.py;",
        "# do not edit. Apply: kubectl -n argocd patch configmap argocd-cm \\",
        "#   --patch-file manifests/argocd/argocd-cm.yaml",
        "data:",
    ]
    prelude = (ARGOCD / "health" / "_prelude.lua").read_text(encoding="utf-8")
    for script in sorted((ARGOCD / "health").glob("continuous.afs.dev_*.lua")):
        lines.append(f"  resource.customizations.health.{script.stem}: |")
        text = prelude + script.read_text(encoding="utf-8")
        lines += [f"    {line}".rstrip() for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def render_dashboard() -> str:
    """The Grafana dashboard built by scripts/dashboard.py (grafana-foundation-sdk)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from dashboard import render

    return render()


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
    dashboard = render_dashboard()
    outputs = {
        INSTALL: render_install(),
        ARGOCD / "argocd-cm.yaml": render_argocd_patch(),
        ROOT / "dashboards" / "afs-continuous.json": dashboard,
        CHART / "dashboards" / "afs-continuous.json": dashboard,
    }
    if args.check:
        stale = [p for p, text in outputs.items() if not p.exists() or p.read_text("utf-8") != text]
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
