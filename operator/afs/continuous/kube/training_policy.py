"""What a LearningLoop's pod template may ask for.

The operator creates the training Job with its own rights (``jobs create`` wherever it
serves), so whoever may create a LearningLoop may run any pod the template describes.
Under the default ``restricted`` policy a template that would escape the node's
isolation is refused (InvalidSpec naming the field): host namespaces, hostPath volumes,
privileged containers, privilege escalation, added capabilities. ``permissive`` (an
operator setting, never a spec field) lets such templates through for clusters that
admit them by other means (Pod Security admission, a policy engine).
"""

from __future__ import annotations

from typing import Any, Literal

TrainingPolicy = Literal["restricted", "permissive"]
POLICIES: tuple[TrainingPolicy, ...] = ("restricted", "permissive")
_HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")


def violations(template: dict[str, Any]) -> list[str]:
    """Each forbidden setting of ``template``, as its field path under it."""
    raw = template.get("spec")
    spec: dict[str, Any] = raw if isinstance(raw, dict) else {}
    found = [f"spec.{key}" for key in _HOST_NAMESPACES if spec.get(key) is True]
    for index, volume in enumerate(spec.get("volumes") or []):
        if isinstance(volume, dict) and "hostPath" in volume:
            found.append(f"spec.volumes.{index}.hostPath")
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        for index, container in enumerate(spec.get(kind) or []):
            if not isinstance(container, dict):
                continue
            context = container.get("securityContext") or {}
            path = f"spec.{kind}.{index}.securityContext"
            if context.get("privileged") is True:
                found.append(f"{path}.privileged")
            if context.get("allowPrivilegeEscalation") is True:
                found.append(f"{path}.allowPrivilegeEscalation")
            if (context.get("capabilities") or {}).get("add"):
                found.append(f"{path}.capabilities.add")
    return found


def refusal(template: dict[str, Any], policy: TrainingPolicy) -> str | None:
    """The InvalidSpec message for ``template`` under ``policy``, or None."""
    if policy == "permissive":
        return None
    found = violations(template)
    if not found:
        return None
    return (
        "; ".join(f"training.template.{path}: not allowed" for path in found)
        + " by the operator's training policy (restricted)"
    )
