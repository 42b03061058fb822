"""What a LearningLoop's training pod template may ask for (the operator creates the Job
with its own rights)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from afs.continuous.kube.api.v1alpha1 import LearningLoopSpec
from afs.continuous.kube.training.job import training_job
from afs.continuous.kube.training_policy import refusal, violations, violations_anywhere

TRAINER = {"name": "trainer", "image": "trainer:1"}


def _template(**spec: Any) -> dict[str, Any]:
    return {"spec": {"containers": [dict(TRAINER)], **spec}}


@pytest.mark.parametrize(
    ("template", "found"),
    [
        (_template(), []),
        (_template(hostNetwork=True, hostPID=True, hostIPC=False),
         ["spec.hostNetwork", "spec.hostPID"]),
        (_template(volumes=[{"name": "data", "emptyDir": {}},
                            {"name": "root", "hostPath": {"path": "/"}}]),
         ["spec.volumes.1.hostPath"]),
        (_template(containers=[{**TRAINER, "securityContext": {"privileged": True}}]),
         ["spec.containers.0.securityContext.privileged"]),
        (_template(initContainers=[{**TRAINER, "securityContext":
                                    {"allowPrivilegeEscalation": True}}]),
         ["spec.initContainers.0.securityContext.allowPrivilegeEscalation"]),
        (_template(containers=[{**TRAINER, "securityContext":
                                {"capabilities": {"add": ["SYS_ADMIN"]}}}]),
         ["spec.containers.0.securityContext.capabilities.add"]),
        (_template(containers=[{**TRAINER, "securityContext":
                                {"privileged": False, "capabilities": {"drop": ["ALL"]}}}],
                   hostUsers=False), []),
    ],
    ids=["plain", "host-namespaces", "hostpath", "privileged", "escalation", "capabilities",
         "hardened"],
)  # fmt: skip
def test_forbidden_settings_are_found_by_field(template: dict[str, Any], found: list[str]) -> None:
    assert violations(template) == found


def test_the_restricted_policy_refuses_and_the_permissive_one_lets_through() -> None:
    template = _template(hostNetwork=True)
    message = refusal(template, "restricted")
    assert message == (
        "training.template.spec.hostNetwork: not allowed by the operator's training policy "
        "(restricted)"
    )
    assert refusal(template, "permissive") is None
    assert refusal(_template(), "restricted") is None


def test_the_job_runs_the_exporter_restricted_without_an_api_token_and_with_a_deadline() -> None:
    spec = LearningLoopSpec.model_validate(
        {
            "model": {"name": "m"},
            "database": {"urlSecretRef": {"name": "db", "key": "url"}},
            "training": {"template": _template()},
        }
    )
    job = training_job(loop="l", namespace="ml", uid="u", spec=spec, run=1, since=None)
    pod = job["spec"]["template"]["spec"]
    exporter = pod["initContainers"][0]
    context = exporter["securityContext"]
    assert context["runAsNonRoot"] and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert exporter["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "url"}
    assert not any("postgres" in part for part in exporter["command"])
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "afs-continuous-training"
    assert job["spec"]["activeDeadlineSeconds"] == 7 * 86400
    kubernetes_validate.validate(job, "1.30", strict=True)


@pytest.mark.parametrize(
    ("spec", "found"),
    [
        ({"nprocPerNode": "gpu", "runPolicy": {"backoffLimit": 1}}, []),
        ({"rayClusterSpec": {"autoscalerOptions": {"securityContext": {"privileged": True}}}},
         ["rayClusterSpec.autoscalerOptions.securityContext.privileged"]),
        ({"podTemplateOverrides": [{"spec": {
            "hostNetwork": True, "volumes": [{"name": "r", "hostPath": {"path": "/"}}]}}]},
         ["podTemplateOverrides.0.spec.hostNetwork",
          "podTemplateOverrides.0.spec.volumes.0.hostPath"]),
        ({"x": {"securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": []}}}},
         ["x.securityContext.capabilities.add"]),
        ({"x": {"securityContext": {"privileged": False, "capabilities": {"drop": ["ALL"]}}}}, []),
    ],
    ids=["plain", "ray-autoscaler", "old-train-job-overrides", "capabilities", "hardened"],
)  # fmt: skip
def test_a_kind_s_own_fields_are_searched_at_any_depth(
    spec: dict[str, Any], found: list[str]
) -> None:
    assert violations_anywhere(spec) == found
    message = refusal(_template(), "restricted", spec=spec)
    if found:
        assert message is not None and message.startswith(f"training.spec.{found[0]}: not allowed")
    else:
        assert message is None
    assert refusal(_template(), "permissive", spec=spec) is None
