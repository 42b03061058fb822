"""The Helm chart renders valid objects, grants what the operator does, refuses bad values,
and ships the same CRDs as ``crds/``; ``manifests/install.yaml`` is its rendering."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from afs.continuous import __version__
from afs.continuous.kube.training import trainer_for
from tests.docs_examples import ROOT

CHART = ROOT / "charts" / "afs-continuous"


def _render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rendered = helm.Chart.load(CHART).render(values, name="afs", namespace="afs-system")
    return [
        doc
        for path, text in sorted(rendered.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def _one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [d for d in documents if d["kind"] == kind]
    return found


def _allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in rules
    )


# What the operator and kopf do (kube/client.py, kube/controllers/, kopf's watches).
WORKLOAD = [
    ("continuous.afs.dev", "learningloops", "watch"),
    ("continuous.afs.dev", "learningloops", "patch"),
    ("continuous.afs.dev", "learningloops/status", "patch"),
    ("continuous.afs.dev", "modelversions", "create"),
    ("continuous.afs.dev", "modelversions", "watch"),
    ("continuous.afs.dev", "modelversions/status", "patch"),
    ("continuous.afs.dev", "abtests", "create"),
    ("continuous.afs.dev", "abtests", "get"),
    ("continuous.afs.dev", "abtests", "watch"),
    ("continuous.afs.dev", "abtests", "patch"),
    ("continuous.afs.dev", "abtests/status", "patch"),
    ("continuous.afs.dev", "learningloops", "get"),
    ("gateway.networking.k8s.io", "httproutes", "get"),
    ("gateway.networking.k8s.io", "httproutes", "patch"),
    ("networking.istio.io", "virtualservices", "get"),
    ("networking.istio.io", "virtualservices", "patch"),
    ("split.smi-spec.io", "trafficsplits", "get"),
    ("split.smi-spec.io", "trafficsplits", "patch"),
    ("serving.knative.dev", "services", "get"),
    ("serving.knative.dev", "services", "patch"),
    ("serving.kserve.io", "inferenceservices", "get"),
    ("serving.kserve.io", "inferenceservices", "patch"),
    ("batch", "jobs", "create"),
    ("batch", "jobs", "get"),
    ("", "pods", "list"),
    ("", "secrets", "get"),
    ("", "serviceaccounts", "create"),
    ("apps", "deployments", "get"),
    ("apps", "deployments", "create"),
    ("apps", "deployments", "patch"),
    ("apps", "deployments", "delete"),
    ("", "services", "get"),
    ("", "services", "create"),
    ("", "services", "delete"),
    ("", "events", "create"),
]
FRAMEWORK = [
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "watch"),
]


def test_the_chart_lints_clean() -> None:
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


def test_chart_crds_and_install_manifests_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_manifests.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"run: python scripts/render_manifests.py\n{result.stderr}"
    chart_crds = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert chart_crds == sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))


@pytest.mark.parametrize(
    "values",
    [
        None,
        {"watchNamespace": "ml", "verbose": True, "metrics": {"serviceMonitor": {"enabled": True}}},
        {"metrics": {"port": 0}, "health": {"port": 0}, "serviceAccount": {"create": False}},
        {"trainingKinds": ["TrainJob", "PyTorchJob", "RayJob"]},
    ],
    ids=["defaults", "one-namespace", "no-ports", "training-kinds"],
)
def test_rendered_objects_are_valid_kubernetes(values: dict[str, Any] | None) -> None:
    for document in _render(values):
        if document["kind"] != "ServiceMonitor":  # a prometheus-operator CRD
            kubernetes_validate.validate(document, "1.30", strict=True)


def test_install_manifests_are_valid_kubernetes() -> None:
    text = (ROOT / "manifests" / "install.yaml").read_text()
    documents = [d for d in yaml.safe_load_all(text) if d]
    assert documents[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "afs-system"},
    }
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)


@pytest.mark.parametrize(("group", "resource", "verb"), WORKLOAD + FRAMEWORK)
def test_cluster_wide_rbac_grants_what_the_operator_does(
    group: str, resource: str, verb: str
) -> None:
    assert _allows(_one(_render(), "ClusterRole")["rules"], group, resource, verb)


def test_one_namespace_gets_a_role_there_and_only_discovery_cluster_wide() -> None:
    documents = _render({"watchNamespace": "ml"})
    cluster_rules = _one(documents, "ClusterRole")["rules"]
    role = _one(documents, "Role")
    assert role["metadata"]["namespace"] == "ml"
    assert _one(documents, "RoleBinding")["subjects"][0]["namespace"] == "afs-system"
    for permission in WORKLOAD:
        assert _allows(role["rules"], *permission), permission
        assert not _allows(cluster_rules, *permission), permission
    for permission in FRAMEWORK:
        assert _allows(cluster_rules, *permission), permission
    [container] = _one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--namespace=ml"]


@pytest.mark.parametrize("namespace", ["", "ml"], ids=["cluster-wide", "one-namespace"])
def test_only_the_training_kinds_listed_in_the_values_are_granted(namespace: str) -> None:
    kinds = [trainer_for(kind) for kind in ("TrainJob", "PyTorchJob", "RayJob")]
    role = "Role" if namespace else "ClusterRole"
    nothing = _one(_render({"watchNamespace": namespace}), role)["rules"]
    for trainer in kinds:
        assert not _allows(nothing, trainer.group, trainer.plural, "create"), trainer.kind
    for enabled in kinds:
        values = {"watchNamespace": namespace, "trainingKinds": [enabled.kind]}
        rules = _one(_render(values), role)["rules"]
        for trainer in kinds:
            for verb in ("get", "create"):  # what the operator does with them
                granted = _allows(rules, trainer.group, trainer.plural, verb)
                assert granted == (trainer is enabled), (enabled.kind, trainer.kind, verb)


def test_the_deployment_runs_one_standalone_operator_with_probes_and_settings() -> None:
    deployment = _one(
        _render({"pollSeconds": 10, "image": {"repository": "r/afs", "tag": "t"}}), "Deployment"
    )
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "r/afs:t"
    assert container["command"] == ["afs-continuous", "operator"]
    assert container["args"] == ["--all-namespaces"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "AFS_OPERATOR_POLL_SECONDS": "10", "AFS_EXPORTER_IMAGE": "r/afs:t",
        "AFS_METRICS_PORT": "9090", "AFS_HEALTH_PORT": "8080",
        "AFS_POD_SECURITY_LEVEL": "restricted",
    }  # fmt: skip
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_without_ports_there_is_no_service_and_no_probe() -> None:
    documents = _render({"metrics": {"port": 0}, "health": {"port": 0}})
    assert [d for d in documents if d["kind"] == "Service"] == []
    [container] = _one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "ports" not in container and "livenessProbe" not in container


@pytest.mark.parametrize("level", ["restricted", "baseline", "privileged"])
def test_the_pod_security_level_reaches_the_operator(level: str) -> None:
    [container] = _one(_render({"podSecurityLevel": level}), "Deployment")["spec"]["template"][
        "spec"
    ]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AFS_POD_SECURITY_LEVEL"] == level


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ({"imag": {"tag": "x"}}, helm.HelmValuesError, "additional properties 'imag' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, helm.HelmValuesError, "/image/pullPolicy"),
        ({"watchNamespace": "Bad_NS"}, helm.HelmValuesError, "/watchNamespace"),
        ({"pollSeconds": 0}, helm.HelmValuesError, "/pollSeconds"),
        ({"trainingKinds": ["MPIJob"]}, helm.HelmValuesError, "/trainingKinds/0"),
        ({"podSecurityLevel": "permissive"}, helm.HelmValuesError, "/podSecurityLevel"),
        ({"trainingPolicy": "permissive"}, helm.HelmRenderError,
         "trainingPolicy is now podSecurityLevel"),
        ({"metrics": {"port": 70000}}, helm.HelmValuesError, "/metrics/port"),
        (
            {"metrics": {"port": 0, "serviceMonitor": {"enabled": True}}},
            helm.HelmRenderError, "serviceMonitor.enabled needs metrics.port",
        ),
    ],
)  # fmt: skip
def test_bad_values_are_refused_by_name(
    values: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        _render(values)


# --- the collector -------------------------------------------------------------------------

COLLECTOR = {
    "enabled": True,
    "database": {"urlSecretRef": {"name": "usage-db", "key": "url"}},
    "token": {"secretRef": {"name": "collector-token", "key": "token"}},
}


def _collector(**more: Any) -> list[dict[str, Any]]:
    return [
        d for d in _render({"collector": {**COLLECTOR, **more}})
        if d["metadata"]["name"].endswith("-collector")
    ]  # fmt: skip


def test_the_collector_is_off_by_default() -> None:
    assert [d for d in _render() if d["metadata"]["name"].endswith("-collector")] == []


@pytest.mark.parametrize(
    "more",
    [{}, {"insecureNoAuth": True, "token": {"secretRef": {"name": "", "key": "token"}}},
     {"kservePort": 0, "networkPolicy": {"enabled": False}}],
    ids=["token", "no-auth", "no-kserve-port"],
)  # fmt: skip
def test_the_collector_renders_valid_kubernetes(more: dict[str, Any]) -> None:
    documents = _collector(**more)
    assert {d["kind"] for d in documents} >= {"Deployment", "Service"}
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)


def test_the_collector_runs_locked_down_with_its_token_and_database_from_secrets() -> None:
    deployment = _one(_collector(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["afs-continuous", "collect"]
    assert "--token-file=/var/run/afs-collector/token" in container["args"]
    assert "--kserve-port=8081" in container["args"]
    assert container["env"] == [{"name": "AFS_DATABASE_URL", "valueFrom": {
        "secretKeyRef": {"name": "usage-db", "key": "url"}}}]  # fmt: skip
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    [token] = [v for v in pod["volumes"] if v["name"] == "token"]
    assert token["secret"] == {"secretName": "collector-token",
                               "items": [{"key": "token", "path": "token"}]}  # fmt: skip


def test_the_collectors_pods_are_not_selected_by_the_operators_objects() -> None:
    documents = _render({"collector": COLLECTOR})
    collector_labels = _one(_collector(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    for document in documents:
        if document["metadata"]["name"].endswith("-collector"):
            continue
        selector = (document.get("spec") or {}).get("selector") or {}
        selector = selector.get("matchLabels", selector)
        if selector:
            assert not all(collector_labels.get(k) == v for k, v in selector.items()), document


def test_only_the_cluster_reaches_the_kserve_port() -> None:
    policy = _one(_collector(), "NetworkPolicy")
    api, kserve = policy["spec"]["ingress"]
    assert "from" not in api and api["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert kserve["from"] == [{"namespaceSelector": {}}]
    peers = [
        {"namespaceSelector": {"matchLabels": {"serving.kserve.io/inferenceservice": "enabled"}}}
    ]
    narrowed = _one(
        _collector(networkPolicy={"enabled": True, "kserveFrom": peers}), "NetworkPolicy"
    )
    assert narrowed["spec"]["ingress"][1]["from"] == peers


@pytest.mark.parametrize(
    ("more", "message"),
    [
        ({"database": {"urlSecretRef": {"name": "", "key": "url"}}},
         "collector.database.urlSecretRef.name is required"),
        ({"token": {"secretRef": {"name": "", "key": "token"}}},
         "collector.token.secretRef.name is required"),
    ],
)  # fmt: skip
def test_the_collector_needs_its_database_and_token(more: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        _collector(**more)


@pytest.mark.parametrize(
    ("more", "path"),
    [({"port": 0}, "/collector/port"), ({"extraArgs": ["rm -rf"]}, "/collector/extraArgs/0"),
     ({"tokn": {}}, "additional properties 'tokn' not allowed")],
)  # fmt: skip
def test_bad_collector_values_are_refused_by_name(more: dict[str, Any], path: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(path)):
        _collector(**more)


# --- the alerts (their behaviour: tests/kube/test_alerts.py, with promtool) -----------------


def test_the_alerts_are_off_by_default_and_need_the_metrics_port() -> None:
    assert [d for d in _render() if d["kind"] == "PrometheusRule"] == []
    with pytest.raises(helm.HelmRenderError, match=re.escape("alerts.enabled needs metrics.port")):
        _render({"alerts": {"enabled": True}, "metrics": {"port": 0}})


def test_the_alerts_job_and_thresholds_follow_the_values() -> None:
    rule = _one(_render({"alerts": {
        "enabled": True, "operatorJob": "afs-operator", "failedRunsInARow": 5,
        "approvalWaitHours": 8, "labels": {"release": "kube-prometheus-stack"},
    }}), "PrometheusRule")  # fmt: skip
    rules = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert rules["AfsOperatorDown"]["expr"] == 'absent(up{job="afs-operator"} == 1)'
    assert rules["AfsLoopRunsFailing"]["expr"].endswith(">= 5")
    assert rules["AfsABTestAwaitingApproval"]["for"] == "8h"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_configmap_carries_the_generated_json_for_grafanas_sidecar() -> None:
    assert [d for d in _render() if d["kind"] == "ConfigMap"] == []
    (config_map,) = [
        d for d in _render({"dashboard": {"enabled": True, "namespace": "monitoring"}})
        if d["kind"] == "ConfigMap"
    ]  # fmt: skip
    kubernetes_validate.validate(config_map, "1.30", strict=True)
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (ROOT / "dashboards" / "afs-continuous.json").read_text()
    assert json.loads(config_map["data"]["afs-continuous.json"]) == json.loads(shipped)


def test_the_notes_say_where_the_collector_listens_when_it_is_on() -> None:
    values = {"collector": {"enabled": True,
                            "database": {"urlSecretRef": {"name": "usage-db"}},
                            "token": {"secretRef": {"name": "collector-token"}}}}  # fmt: skip
    notes = helm.Chart.load(CHART).render(values, name="afs", namespace="afs-system")[
        "afs-continuous/templates/NOTES.txt"
    ]
    assert ":8080/v1/usage" in notes and "Secret collector-token, key token" in notes
    assert ":8081/v1/kserve?model=<arm>" in notes
    quiet = helm.Chart.load(CHART).render({}, name="afs", namespace="afs-system")
    assert "collector" not in quiet["afs-continuous/templates/NOTES.txt"]
