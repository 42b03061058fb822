"""The operator's pod security levels, control by control as the Pod Security Standards
define them, for every kind of pod the operator makes or has an engine make: one row per
control, checked at each level for each pod kind."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from afs.continuous.kube import pod_security
from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec, ModelVersionSpec
from afs.continuous.kube.pod_security import LEVELS, Level
from afs.continuous.kube.serving import plan_serving
from afs.continuous.kube.training import RunContext, trainer_for
from afs.continuous.kube.training.export import export_job
from afs.continuous.kube.training.job import training_job
from tests.kube.pods import restricted
from tests.kube.test_crds import MANIFESTS

Change = Callable[[dict[str, Any]], None]


def _pod(key: str, value: Any) -> Change:
    return lambda t: t["spec"].__setitem__(key, value)


def _pod_context(key: str, value: Any) -> Change:
    return lambda t: t["spec"]["securityContext"].__setitem__(key, value)


def _context(key: str, value: Any) -> Change:
    return lambda t: t["spec"]["containers"][0]["securityContext"].__setitem__(key, value)


def _unset(key: str) -> Change:
    def change(template: dict[str, Any]) -> None:
        template["spec"]["securityContext"].pop(key, None)
        template["spec"]["containers"][0]["securityContext"].pop(key, None)

    return change


def _container(key: str, value: Any) -> Change:
    return lambda t: t["spec"]["containers"][0].__setitem__(key, value)


def _annotation(key: str, value: str) -> Change:
    return lambda t: (
        t.setdefault("metadata", {}).setdefault("annotations", {}).__setitem__(key, value)
    )


C = "spec.containers.0"
APPARMOR = "container.apparmor.security.beta.kubernetes.io/trainer"
# (id, change, the lowest level that refuses it or None, the field named, the control)
CONTROLS: list[tuple[str, Change, Level | None, str, str]] = [
    ("host-process-pod", _pod_context("windowsOptions", {"hostProcess": True}), "baseline",
     "spec.securityContext.windowsOptions.hostProcess", "HostProcess"),
    ("host-process", _context("windowsOptions", {"hostProcess": True}), "baseline",
     f"{C}.securityContext.windowsOptions.hostProcess", "HostProcess"),
    ("host-network", _pod("hostNetwork", True), "baseline", "spec.hostNetwork", "Host Namespaces"),
    ("host-pid", _pod("hostPID", True), "baseline", "spec.hostPID", "Host Namespaces"),
    ("host-ipc", _pod("hostIPC", True), "baseline", "spec.hostIPC", "Host Namespaces"),
    ("privileged", _context("privileged", True), "baseline", f"{C}.securityContext.privileged",
     "Privileged Containers"),
    ("capability-sys-admin", _context("capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
     "baseline", f"{C}.securityContext.capabilities.add", "Capabilities"),
    ("host-path", _pod("volumes", [{"name": "root", "hostPath": {"path": "/"}}]), "baseline",
     "spec.volumes.0.hostPath", "HostPath Volumes"),
    ("host-port", _container("ports", [{"containerPort": 80, "hostPort": 80}]), "baseline",
     f"{C}.ports.0.hostPort", "Host Ports"),
    ("apparmor-pod", _pod_context("appArmorProfile", {"type": "Unconfined"}), "baseline",
     "spec.securityContext.appArmorProfile.type", "AppArmor"),
    ("apparmor", _context("appArmorProfile", {"type": "Unconfined"}), "baseline",
     f"{C}.securityContext.appArmorProfile.type", "AppArmor"),
    ("apparmor-annotation", _annotation(APPARMOR, "unconfined"), "baseline",
     f"metadata.annotations.{APPARMOR}", "AppArmor"),
    ("selinux-type-pod", _pod_context("seLinuxOptions", {"type": "spc_t"}), "baseline",
     "spec.securityContext.seLinuxOptions.type", "SELinux"),
    ("selinux-type", _context("seLinuxOptions", {"type": "spc_t"}), "baseline",
     f"{C}.securityContext.seLinuxOptions.type", "SELinux"),
    ("selinux-user", _context("seLinuxOptions", {"user": "system_u"}), "baseline",
     f"{C}.securityContext.seLinuxOptions.user", "SELinux"),
    ("selinux-role", _pod_context("seLinuxOptions", {"role": "sysadm_r"}), "baseline",
     "spec.securityContext.seLinuxOptions.role", "SELinux"),
    ("proc-mount", _context("procMount", "Unmasked"), "baseline",
     f"{C}.securityContext.procMount", "/proc Mount Type"),
    ("seccomp-unconfined-pod", _pod_context("seccompProfile", {"type": "Unconfined"}),
     "baseline", "spec.securityContext.seccompProfile.type", "Seccomp"),
    ("seccomp-unconfined", _context("seccompProfile", {"type": "Unconfined"}), "baseline",
     f"{C}.securityContext.seccompProfile.type", "Seccomp"),
    ("unsafe-sysctl", _pod_context("sysctls", [{"name": "kernel.core_pattern", "value": "|x"}]),
     "baseline", "spec.securityContext.sysctls.0.name", "Sysctls"),
    ("volume-type", _pod("volumes", [{"name": "n", "nfs": {"server": "s", "path": "/"}}]),
     "restricted", "spec.volumes.0", "Volume Types"),
    ("escalation", _context("allowPrivilegeEscalation", True), "restricted",
     f"{C}.securityContext.allowPrivilegeEscalation", "Privilege Escalation"),
    ("escalation-unset", _unset("allowPrivilegeEscalation"), "restricted",
     f"{C}.securityContext.allowPrivilegeEscalation", "Privilege Escalation"),
    ("non-root-false", _context("runAsNonRoot", False), "restricted",
     f"{C}.securityContext.runAsNonRoot", "Running as Non-root"),
    ("non-root-unset", _unset("runAsNonRoot"), "restricted",
     f"{C}.securityContext.runAsNonRoot", "Running as Non-root"),
    ("user-0-pod", _pod_context("runAsUser", 0), "restricted",
     "spec.securityContext.runAsUser", "Running as Non-root user"),
    ("user-0", _context("runAsUser", 0), "restricted",
     f"{C}.securityContext.runAsUser", "Running as Non-root user"),
    ("seccomp-unset", _unset("seccompProfile"), "restricted",
     f"{C}.securityContext.seccompProfile.type", "Seccomp"),
    ("capabilities-kept", _context("capabilities", {}), "restricted",
     f"{C}.securityContext.capabilities.drop", "Capabilities"),
    ("capability-chown", _context("capabilities", {"drop": ["ALL"], "add": ["CHOWN"]}),
     "restricted", f"{C}.securityContext.capabilities.add", "Capabilities"),
    # what the standard allows, at every level
    ("safe-sysctl", _pod_context("sysctls", [{"name": "net.ipv4.ip_local_port_range",
                                              "value": "1024 65535"}]), None, "", ""),
    ("selinux-container-t", _context("seLinuxOptions", {"type": "container_t"}), None, "", ""),
    ("seccomp-localhost", _context("seccompProfile", {"type": "Localhost",
                                                      "localhostProfile": "p.json"}), None, "", ""),
    ("net-bind-service", _context("capabilities", {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
     None, "", ""),
    ("apparmor-runtime-default", _annotation(APPARMOR, "runtime/default"), None, "", ""),
    ("user-1000", _context("runAsUser", 1000), None, "", ""),
    ("volume-types", _pod("volumes", [{"name": "d", "emptyDir": {}},
                                      {"name": "c", "persistentVolumeClaim": {"claimName": "c"}}]),
     None, "", ""),
]  # fmt: skip


def _refuses(level: Level, lowest: Level | None) -> bool:
    return lowest is not None and LEVELS.index(level) <= LEVELS.index(lowest)


def _trainer(kind: str) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "pytorch" if kind == "PyTorchJob" else "trainer",
        "image": "t:1",
    }
    if kind == "RayJob":
        container["command"] = ["python", "train.py"]
    return restricted(container)


def _loop(kind: str, template: dict[str, Any], **extra: Any) -> LearningLoopSpec:
    dataset = {"volumeClaim": "shared"} if kind != "Job" else {}
    return LearningLoopSpec.model_validate(
        {"model": {"name": "nayru-v1"}, "dataset": dataset,
         "database": {"urlSecretRef": {"name": "db", "key": "url"}},
         "training": {"kind": kind, "nodes": 1 if kind == "Job" else 2, "template": template},
         **extra}
    )  # fmt: skip


def _message(kind: str, change: Change, level: Level) -> str | None:
    """The refusal of a pod of ``kind`` with ``change`` made to it, at ``level``."""
    if kind.startswith("ModelVersion"):
        template = restricted({"name": "server", "image": "s:1"})
        change(template)
        copied = kind == "ModelVersion/copyFrom"
        serving = {"copyFrom": "nayru-v1"} if copied else {"template": template}
        version = ModelVersionSpec.model_validate(
            {"model": "nayru", "version": "v2", "uri": "s3://m/v2", "serving": serving}
        )
        plan = plan_serving(
            version="nayru-v2", namespace="ml", uid="u", spec=version, stage=None, current=None,
            deployment=None, service=None, now=datetime(2026, 12, 1, tzinfo=UTC), level=level,
            source={"spec": {"template": template}} if copied else None,
        )  # fmt: skip
        _, reason, message = plan.available
        return message if reason == "InvalidSpec" else None
    if kind == "LearningLoop/serving":
        template = restricted({"name": "server", "image": "s:1"})
        change(template)
        spec = _loop("Job", _trainer("Job"), serving={"template": template})
    elif kind == "LearningLoop/evaluation":
        template = restricted({"name": "evaluator", "image": "e:1"})
        change(template)
        spec = _loop("Job", _trainer("Job"), evaluation={"template": template})
    else:
        template = _trainer(kind)
        change(template)
        spec = _loop(kind, template)
    return pod_security.refusal(pod_security.loop_violations(spec, level), level)


PREFIX = {
    "Job": "training.template", "TrainJob": "training.template",
    "PyTorchJob": "training.template", "RayJob": "training.template",
    "LearningLoop/serving": "serving.template", "ModelVersion/template": "serving.template",
    "LearningLoop/evaluation": "evaluation.template",
    "ModelVersion/copyFrom": "serving.copyFrom (Deployment nayru-v1) spec.template",
}  # fmt: skip


@pytest.mark.parametrize("kind", list(PREFIX))
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    ("change", "lowest", "field", "control"),
    [pytest.param(*row[1:], id=row[0]) for row in CONTROLS],
)
def test_each_control_is_refused_from_its_level_up_naming_the_field_and_the_control(
    kind: str, level: Level, change: Change, lowest: Level | None, field: str, control: str
) -> None:
    message = _message(kind, change, level)
    if not _refuses(level, lowest):
        assert message is None
        return
    assert message is not None
    assert f"{PREFIX[kind]}.{field}: " in message
    assert f"(Pod Security {lowest}: {control})" in message
    assert message.endswith(f"refused by the operator's pod security level ({level})")


@pytest.mark.parametrize(
    ("spec", "found"),
    [
        ({"nprocPerNode": "gpu", "runPolicy": {"backoffLimit": 1}}, []),
        ({"rayClusterSpec": {"autoscalerOptions": {"securityContext": {"privileged": True}}}},
         ["rayClusterSpec.autoscalerOptions.securityContext.privileged"]),
        ({"rayClusterSpec": {"autoscalerOptions": {"securityContext": {
            "seLinuxOptions": {"type": "spc_t"}, "procMount": "Unmasked", "runAsUser": 0,
            "seccompProfile": {"type": "Unconfined"}}}}},
         ["rayClusterSpec.autoscalerOptions.securityContext.seLinuxOptions.type",
          "rayClusterSpec.autoscalerOptions.securityContext.seccompProfile.type",
          "rayClusterSpec.autoscalerOptions.securityContext.procMount",
          "rayClusterSpec.autoscalerOptions.securityContext.runAsUser"]),
        ({"podTemplateOverrides": [{"spec": {
            "hostNetwork": True, "volumes": [{"name": "r", "hostPath": {"path": "/"}}],
            "containers": [{"name": "node", "ports": [{"hostPort": 22}]}]}}]},
         ["podTemplateOverrides.0.spec.hostNetwork",
          "podTemplateOverrides.0.spec.volumes.0.hostPath",
          "podTemplateOverrides.0.spec.containers.0.ports.0.hostPort"]),
        ({"x": {"securityContext": {"windowsOptions": {"hostProcess": True},
                                    "sysctls": [{"name": "kernel.core_pattern"}]}}},
         ["x.securityContext.windowsOptions.hostProcess", "x.securityContext.sysctls.0.name"]),
        ({"x": {"securityContext": {"privileged": False, "capabilities": {"drop": ["ALL"]}}}}, []),
    ],
    ids=["plain", "ray-autoscaler", "ray-autoscaler-escapes", "train-job-overrides",
         "host-process-and-sysctl", "hardened"],
)  # fmt: skip
def test_fragments_of_an_engine_s_spec_are_searched_at_any_depth(
    spec: dict[str, Any], found: list[str]
) -> None:
    """A fragment (an override, an autoscaler's container) need not carry what restricted
    requires, but must not switch any of it off."""
    assert [v.path for v in pod_security.check_spec_anywhere(spec, "restricted")] == found
    assert pod_security.check_spec_anywhere(spec, "privileged") == []


def test_a_whole_pod_template_in_an_engine_s_spec_is_checked_as_a_pod() -> None:
    worker = copy.deepcopy(_trainer("RayJob"))
    worker["spec"]["containers"][0]["securityContext"]["seLinuxOptions"] = {"type": "spc_t"}
    spec = {"rayClusterSpec": {"workerGroupSpecs": [{"template": worker}]}}
    [violation] = pod_security.check_spec_anywhere(spec, "baseline", "training.spec")
    assert violation.path == (
        "training.spec.rayClusterSpec.workerGroupSpecs.0.template."
        "spec.containers.0.securityContext.seLinuxOptions.type"
    )


def _pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] in ("Job", "Deployment"):
        return [obj["spec"]["template"]]
    return [t for _, t in pod_security._pod_templates(obj["spec"], "")]


@pytest.mark.parametrize("kind", ["Job", "TrainJob", "PyTorchJob", "RayJob"])
def test_what_the_operator_adds_to_a_restricted_template_stays_restricted(kind: str) -> None:
    """Our own containers (the exporter, KubeRay's submitter) meet the level the user's
    template is held to, so a compliant spec makes only compliant pods."""
    spec = _loop(kind, _trainer(kind))
    context = RunContext(
        loop="nayru", namespace="ml", uid="u", spec=spec, run=1, since=None,
        exporter_image="afs:1",
    )  # fmt: skip
    if kind == "Job":
        objects = [training_job(loop="nayru", namespace="ml", uid="u", spec=spec, run=1,
                                since=None)]  # fmt: skip
    else:
        objects = [trainer_for(kind).build(context), export_job(context)]
    templates = [t for obj in objects for t in _pod_templates(obj)]
    assert templates
    for template in templates:
        if kind == "TrainJob" and "containers" not in template.get("spec", {}):
            continue
        assert pod_security.check_pod_template(template, "restricted") == []


@pytest.mark.parametrize(
    ("text", "level"),
    [("restricted", "restricted"), ("baseline", "baseline"), ("privileged", "privileged"),
     ("permissive", "privileged")],
)  # fmt: skip
def test_levels_are_named_and_the_former_permissive_is_privileged(text: str, level: str) -> None:
    assert pod_security.parse_level(text) == level


def test_an_unknown_level_is_refused_with_the_levels_there_are() -> None:
    with pytest.raises(ValueError, match="must be one of restricted, baseline, privileged"):
        pod_security.parse_level("lax")


@pytest.mark.parametrize("text", [t for _, t in MANIFESTS], ids=[n for n, _ in MANIFESTS])
def test_every_example_meets_the_default_level(text: str) -> None:
    """What the docs and examples show is accepted as written by an operator installed
    with its defaults."""
    manifest = yaml.safe_load(text)
    if manifest["kind"] == "LearningLoop":
        spec = LearningLoopSpec.model_validate(manifest["spec"])
        assert pod_security.loop_violations(spec, "restricted") == []
    serving = manifest["spec"].get("serving") or {}
    if manifest["kind"] == "ModelVersion" and "template" in serving:
        assert pod_security.check_pod_template(serving["template"], "restricted") == []
