"""The Pod Security Standards, as the operator applies them to every pod it makes or asks
an engine to make: training Jobs, TrainJob / PyTorchJob / RayJob pod templates, and
deploy-mode Deployments.

The operator creates those objects with its own rights (``jobs create``, ``deployments
create`` wherever it serves), so whoever may create a LearningLoop or a ModelVersion may
run any pod its template describes — unless the operator refuses it. It refuses as the
Kubernetes Pod Security Standards define their levels, control by control (as the
standard's document states them; no admission controller is run here):

- ``baseline``: no host namespaces, HostProcess, privileged containers, added
  capabilities beyond the default set, hostPath volumes, host ports, AppArmor or seccomp
  ``Unconfined``, custom SELinux user/role or type, unmasked ``/proc``, unsafe sysctls;
- ``restricted`` (the default): baseline, plus only the ephemeral and configuration
  volume types, ``allowPrivilegeEscalation: false``, running as non-root (and never as
  UID 0), a ``RuntimeDefault`` or ``Localhost`` seccomp profile, and every capability
  dropped (``NET_BIND_SERVICE`` alone may be added back);
- ``privileged``: nothing is checked, for clusters that admit pods by other means. It is
  never a default: it must be named.

Each finding names the field, the control and the level, so the InvalidSpec condition
says what to change. Pure functions: the controllers call them on the spec they read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec

Level = Literal["restricted", "baseline", "privileged"]
LEVELS: tuple[Level, ...] = ("restricted", "baseline", "privileged")
#: the settings' former values (``trainingPolicy: permissive``), still accepted
LEGACY_LEVELS: dict[str, Level] = {"permissive": "privileged"}

CONTAINER_KINDS = ("initContainers", "containers", "ephemeralContainers")
_HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")
_BASELINE_CAPABILITIES = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
     "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)  # fmt: skip
_RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
_SAFE_SYSCTLS = frozenset(
    {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
     "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
     "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
     "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
     "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
)  # fmt: skip
_RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
     "projected", "secret"}
)  # fmt: skip
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
_CONFINED = frozenset({"RuntimeDefault", "Localhost"})


@dataclass(frozen=True)
class Violation:
    """One setting a level refuses: where it is, which control of the standard it breaks,
    and what the control allows instead."""

    path: str
    control: str
    level: Level
    allowed: str

    def __str__(self) -> str:
        return f"{self.path}: {self.allowed} (Pod Security {self.level}: {self.control})"


def parse_level(text: str) -> Level:
    """The level a setting names (the former ``permissive`` is ``privileged``)."""
    value = LEGACY_LEVELS.get(text, text)
    for level in LEVELS:
        if value == level:
            return level
    raise ValueError(f"must be one of {', '.join(LEVELS)}, got {text!r}")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in CONTAINER_KINDS:
        for index, container in enumerate(_list(spec.get(kind))):
            if isinstance(container, dict):
                yield f"spec.{kind}.{index}", container


def _baseline_context(path: str, context: dict[str, Any]) -> Iterator[Violation]:
    """The baseline controls that a pod's and a container's securityContext share."""
    if _dict(context.get("windowsOptions")).get("hostProcess") is True:
        yield Violation(f"{path}.windowsOptions.hostProcess", "HostProcess", "baseline",
                        "must be unset or false")  # fmt: skip
    selinux = _dict(context.get("seLinuxOptions"))
    if selinux.get("type") not in (None, *_SELINUX_TYPES):
        yield Violation(
            f"{path}.seLinuxOptions.type",
            "SELinux",
            "baseline",
            f"must be unset or one of {', '.join(sorted(_SELINUX_TYPES - {''}))}",
        )
    for key in ("user", "role"):
        if selinux.get(key) not in (None, ""):
            yield Violation(f"{path}.seLinuxOptions.{key}", "SELinux", "baseline",
                            "must be unset")  # fmt: skip
    if _dict(context.get("seccompProfile")).get("type") == "Unconfined":
        yield Violation(f"{path}.seccompProfile.type", "Seccomp", "baseline",
                        "must not be Unconfined")  # fmt: skip
    if _dict(context.get("appArmorProfile")).get("type") not in (None, *_CONFINED):
        yield Violation(f"{path}.appArmorProfile.type", "AppArmor", "baseline",
                        "must be unset, RuntimeDefault or Localhost")  # fmt: skip


def _baseline(template: dict[str, Any]) -> Iterator[Violation]:
    spec = _dict(template.get("spec"))
    for key in _HOST_NAMESPACES:
        if spec.get(key) is True:
            yield Violation(f"spec.{key}", "Host Namespaces", "baseline", "must be unset or false")
    pod_context = _dict(spec.get("securityContext"))
    yield from _baseline_context("spec.securityContext", pod_context)
    for index, sysctl in enumerate(_list(pod_context.get("sysctls"))):
        name = _dict(sysctl).get("name")
        if name not in _SAFE_SYSCTLS:
            yield Violation(
                f"spec.securityContext.sysctls.{index}.name",
                "Sysctls",
                "baseline",
                "must be one of the safe sysctls (e.g. net.ipv4.ip_local_port_range)",
            )
    for index, volume in enumerate(_list(spec.get("volumes"))):
        if isinstance(volume, dict) and "hostPath" in volume:
            yield Violation(f"spec.volumes.{index}.hostPath", "HostPath Volumes", "baseline",
                            "must be unset")  # fmt: skip
    annotations = _dict(_dict(template.get("metadata")).get("annotations"))
    for key, value in annotations.items():
        if str(key).startswith(_APPARMOR_ANNOTATION) and not (
            value in ("", "runtime/default") or str(value).startswith("localhost/")
        ):
            yield Violation(f"metadata.annotations.{key}", "AppArmor", "baseline",
                            "must be runtime/default or localhost/<profile>")  # fmt: skip
    for path, container in _containers(spec):
        context = _dict(container.get("securityContext"))
        here = f"{path}.securityContext"
        yield from _baseline_context(here, context)
        if context.get("privileged") is True:
            yield Violation(f"{here}.privileged", "Privileged Containers", "baseline",
                            "must be unset or false")  # fmt: skip
        added = _list(_dict(context.get("capabilities")).get("add"))
        if any(c not in _BASELINE_CAPABILITIES for c in added):
            yield Violation(
                f"{here}.capabilities.add",
                "Capabilities",
                "baseline",
                "may add only the default capabilities (e.g. CHOWN, SETUID)",
            )
        if context.get("procMount") not in (None, "Default"):
            yield Violation(f"{here}.procMount", "/proc Mount Type", "baseline",
                            "must be unset or Default")  # fmt: skip
        for port_index, port in enumerate(_list(container.get("ports"))):
            if _dict(port).get("hostPort") not in (None, 0):
                yield Violation(f"{path}.ports.{port_index}.hostPort", "Host Ports", "baseline",
                                "must be unset or 0")  # fmt: skip


def _restricted(template: dict[str, Any]) -> Iterator[Violation]:
    spec = _dict(template.get("spec"))
    for index, volume in enumerate(_list(spec.get("volumes"))):
        kinds = [k for k in _dict(volume) if k != "name"]
        if any(k not in _RESTRICTED_VOLUMES for k in kinds):
            yield Violation(
                f"spec.volumes.{index}",
                "Volume Types",
                "restricted",
                f"must be one of {', '.join(sorted(_RESTRICTED_VOLUMES))}",
            )
    pod_context = _dict(spec.get("securityContext"))
    pod_non_root = pod_context.get("runAsNonRoot")
    pod_seccomp = _dict(pod_context.get("seccompProfile")).get("type")
    if pod_non_root is False:
        yield Violation("spec.securityContext.runAsNonRoot", "Running as Non-root",
                        "restricted", "must be true")  # fmt: skip
    if pod_context.get("runAsUser") == 0:
        yield Violation("spec.securityContext.runAsUser", "Running as Non-root user",
                        "restricted", "must not be 0")  # fmt: skip
    for path, container in _containers(spec):
        context = _dict(container.get("securityContext"))
        here = f"{path}.securityContext"
        if context.get("allowPrivilegeEscalation") is not False:
            yield Violation(f"{here}.allowPrivilegeEscalation", "Privilege Escalation",
                            "restricted", "must be false")  # fmt: skip
        non_root = context.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod_non_root is not True):
            yield Violation(f"{here}.runAsNonRoot", "Running as Non-root", "restricted",
                            "must be true (here or in spec.securityContext)")  # fmt: skip
        if context.get("runAsUser") == 0:
            yield Violation(f"{here}.runAsUser", "Running as Non-root user", "restricted",
                            "must not be 0")  # fmt: skip
        seccomp = _dict(context.get("seccompProfile")).get("type")
        if seccomp not in _CONFINED and not (seccomp is None and pod_seccomp in _CONFINED):
            yield Violation(f"{here}.seccompProfile.type", "Seccomp", "restricted",
                            "must be RuntimeDefault or Localhost (here or in "
                            "spec.securityContext)")  # fmt: skip
        capabilities = _dict(context.get("capabilities"))
        if "ALL" not in _list(capabilities.get("drop")):
            yield Violation(f"{here}.capabilities.drop", "Capabilities", "restricted",
                            "must include ALL")  # fmt: skip
        if any(c not in _RESTRICTED_CAPABILITIES for c in _list(capabilities.get("add"))):
            yield Violation(f"{here}.capabilities.add", "Capabilities", "restricted",
                            "may add only NET_BIND_SERVICE")  # fmt: skip


def check_pod_template(template: dict[str, Any], level: Level) -> list[Violation]:
    """Every setting of a pod template (``metadata`` and ``spec``) that ``level`` refuses,
    each path relative to the template. A control refused at both levels (e.g. adding
    SYS_ADMIN) is reported once, as the baseline's."""
    if level == "privileged":
        return []
    found = list(_baseline(template))
    if level == "restricted":
        seen = {v.path for v in found}
        found += [v for v in _restricted(template) if v.path not in seen]
    return found


def _is_pod_template(key: str, value: Any) -> bool:
    """A complete pod template inside an engine's spec (``template`` of a replica or
    worker group, KubeRay's ``submitterPodTemplate``): one whose spec lists containers."""
    return (
        key.lower().endswith("template")
        and isinstance(value, dict)
        and isinstance(_dict(value.get("spec")).get("containers"), list)
    )


def _pod_fields_anywhere(value: Any, path: str) -> Iterator[Violation]:
    """The baseline's explicit refusals in fragments that are not whole pod templates
    (an engine's overrides, a RayJob's autoscaler container): a fragment cannot be
    required to carry the restricted level's settings, but it must not switch one off."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _pod_fields_anywhere(item, f"{path}.{index}")
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        here = f"{path}.{key}" if path else str(key)
        if _is_pod_template(key, item):
            continue  # checked whole by check_spec_anywhere
        if key in _HOST_NAMESPACES and item is True:
            yield Violation(here, "Host Namespaces", "baseline", "must be unset or false")
        elif key == "hostPath":
            yield Violation(here, "HostPath Volumes", "baseline", "must be unset")
        elif key == "hostPort" and item not in (None, 0):
            yield Violation(here, "Host Ports", "baseline", "must be unset or 0")
        elif key == "securityContext" and isinstance(item, dict):
            yield from _baseline_context(here, item)
            yield from _explicit_context(here, item)
        else:
            yield from _pod_fields_anywhere(item, here)


def _explicit_context(path: str, context: dict[str, Any]) -> Iterator[Violation]:
    if context.get("privileged") is True:
        yield Violation(f"{path}.privileged", "Privileged Containers", "baseline",
                        "must be unset or false")  # fmt: skip
    if context.get("allowPrivilegeEscalation") is True:
        yield Violation(f"{path}.allowPrivilegeEscalation", "Privilege Escalation",
                        "restricted", "must be false")  # fmt: skip
    if any(c not in _BASELINE_CAPABILITIES
           for c in _list(_dict(context.get("capabilities")).get("add"))):  # fmt: skip
        yield Violation(
            f"{path}.capabilities.add",
            "Capabilities",
            "baseline",
            "may add only the default capabilities (e.g. CHOWN, SETUID)",
        )
    if context.get("procMount") not in (None, "Default"):
        yield Violation(f"{path}.procMount", "/proc Mount Type", "baseline",
                        "must be unset or Default")  # fmt: skip
    if context.get("runAsUser") == 0:
        yield Violation(f"{path}.runAsUser", "Running as Non-root user", "restricted",
                        "must not be 0")  # fmt: skip
    if context.get("runAsNonRoot") is False:
        yield Violation(f"{path}.runAsNonRoot", "Running as Non-root", "restricted",
                        "must be true")  # fmt: skip
    for index, sysctl in enumerate(_list(context.get("sysctls"))):
        if _dict(sysctl).get("name") not in _SAFE_SYSCTLS:
            yield Violation(
                f"{path}.sysctls.{index}.name",
                "Sysctls",
                "baseline",
                "must be one of the safe sysctls (e.g. net.ipv4.ip_local_port_range)",
            )


def check_spec_anywhere(value: Any, level: Level, path: str = "") -> list[Violation]:
    """Every setting ``level`` refuses at any depth of an engine's own spec (a TrainJob's,
    PyTorchJob's or RayJob's ``training.spec``): whole pod templates are checked as pods,
    fragments for the settings they switch off."""
    if level == "privileged":
        return []
    found = [
        v for v in _pod_fields_anywhere(value, path) if level == "restricted" or v.level == level
    ]
    for where, template in _pod_templates(value, path):
        found += under(where, check_pod_template(template, level))
    return found


def _pod_templates(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _pod_templates(item, f"{path}.{index}")
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if _is_pod_template(key, item):
                yield here, item
            else:
                yield from _pod_templates(item, here)


def under(prefix: str, violations: list[Violation]) -> list[Violation]:
    """``violations`` with their paths read from the resource's root (``prefix`` is where
    the template or spec they were found in sits)."""
    return [Violation(f"{prefix}.{v.path}", v.control, v.level, v.allowed) for v in violations]


def refusal(violations: list[Violation], level: Level) -> str | None:
    """The InvalidSpec message for ``violations`` (None when there are none)."""
    if not violations:
        return None
    listed = "; ".join(str(v) for v in violations)
    return f"{listed} — refused by the operator's pod security level ({level})"


def loop_violations(spec: LearningLoopSpec, level: Level) -> list[Violation]:
    """Every pod a LearningLoop would have made: its training template, the pod templates
    and fragments in its engine's ``training.spec``, its deploy-mode template and its
    evaluator's."""
    found = under("training.template", check_pod_template(spec.training.template, level))
    found += check_spec_anywhere(spec.training.spec or {}, level, "training.spec")
    if spec.serving is not None and spec.serving.template is not None:
        found += under("serving.template", check_pod_template(spec.serving.template, level))
    if spec.evaluation is not None:
        found += under("evaluation.template", check_pod_template(spec.evaluation.template, level))
    return found
