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


def violations_anywhere(value: Any, path: str = "") -> list[str]:
    """Each forbidden setting at any depth of ``value``: ``training.spec`` holds a kind's
    own fields, some of which describe pods or containers of their own (a RayJob's
    autoscaler options, an older TrainJob's pod overrides)."""
    found: list[str] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            found += violations_anywhere(item, f"{path}.{index}")
        return found
    if not isinstance(value, dict):
        return found
    for key, item in value.items():
        here = f"{path}.{key}" if path else str(key)
        forbidden = (
            (key in (*_HOST_NAMESPACES, "privileged", "allowPrivilegeEscalation") and item is True)
            or key == "hostPath"
            or (key == "capabilities" and isinstance(item, dict) and bool(item.get("add")))
        )
        if forbidden:
            found.append(f"{here}.add" if key == "capabilities" else here)
        else:
            found += violations_anywhere(item, here)
    return found


def refusal(
    template: dict[str, Any], policy: TrainingPolicy, *, spec: dict[str, Any] | None = None
) -> str | None:
    """The InvalidSpec message for ``template`` (and the kind's ``spec``) under
    ``policy``, or None."""
    if policy == "permissive":
        return None
    found = [f"training.template.{path}" for path in violations(template)]
    found += [f"training.spec.{path}" for path in violations_anywhere(spec or {})]
    if not found:
        return None
    return (
        "; ".join(f"{path}: not allowed" for path in found)
        + " by the operator's training policy (restricted)"
    )
