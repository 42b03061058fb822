"""The fields each engine's project documents for the objects the operator writes, so
that a test fails on a field the engine would drop or refuse.

- TrainJob: Kubeflow Trainer's own published models (``kubeflow-trainer-api`` 2.3.0): an
  object that does not round-trip through them unchanged holds a field they lack.
- PyTorchJob: ``kubeflow.org/v1`` as the Kubeflow Training Operator v1.9 defines it
  (``PyTorchJobSpec``, ``ReplicaSpec``, ``RunPolicy``).
- RayJob: ``ray.io/v1`` as KubeRay defines it (``RayJobSpec``, ``RayClusterSpec``,
  ``HeadGroupSpec``, ``WorkerGroupSpec``).
Pod templates inside them are checked against Kubernetes' own OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate

POD = "PodTemplateSpec"
ANY = "any"
Schema = dict[str, Any] | str | list[Any]

_RUN_POLICY = {
    "activeDeadlineSeconds": ANY, "backoffLimit": ANY, "cleanPodPolicy": ANY, "managedBy": ANY,
    "schedulingPolicy": ANY, "suspend": ANY, "ttlSecondsAfterFinished": ANY,
}  # fmt: skip
_REPLICA = {"replicas": ANY, "restartPolicy": ANY, "template": POD}
PYTORCH_JOB: dict[str, Schema] = {
    "elasticPolicy": ANY,
    "nprocPerNode": ANY,
    "pytorchReplicaSpecs": {"Master": _REPLICA, "Worker": _REPLICA},
    "runPolicy": _RUN_POLICY,
}
_HEAD = {
    "enableIngress": ANY, "headService": ANY, "rayStartParams": ANY, "serviceType": ANY,
    "template": POD,
}  # fmt: skip
_WORKERS = {
    "groupName": ANY, "idleTimeoutSeconds": ANY, "maxReplicas": ANY, "minReplicas": ANY,
    "numOfHosts": ANY, "rayStartParams": ANY, "replicas": ANY, "scaleStrategy": ANY,
    "suspend": ANY, "template": POD,
}  # fmt: skip
_CLUSTER = {
    "autoscalerOptions": ANY, "enableInTreeAutoscaling": ANY, "gcsFaultToleranceOptions": ANY,
    "headGroupSpec": _HEAD, "headServiceAnnotations": ANY, "managedBy": ANY,
    "rayVersion": ANY, "suspend": ANY, "workerGroupSpecs": [_WORKERS],
}  # fmt: skip
RAY_JOB: dict[str, Schema] = {
    "activeDeadlineSeconds": ANY, "backoffLimit": ANY, "clusterSelector": ANY,
    "deletionStrategy": ANY, "entrypoint": ANY, "entrypointNumCpus": ANY,
    "entrypointNumGpus": ANY, "entrypointResources": ANY, "jobId": ANY, "managedBy": ANY,
    "metadata": ANY, "rayClusterSpec": _CLUSTER, "runtimeEnvYAML": ANY, "schedule": ANY,
    "shutdownAfterJobFinishes": ANY, "submissionMode": ANY, "submitterConfig": ANY,
    "submitterPodTemplate": POD, "suspend": ANY, "ttlSecondsAfterFinished": ANY,
}  # fmt: skip


def unknown_fields(value: Any, schema: Schema, path: str = "spec") -> list[str]:
    """The fields of ``value`` that ``schema`` does not know, as paths; pod templates are
    validated (an invalid one is reported with the validator's message)."""
    if schema == ANY:
        return []
    if schema == POD:
        document = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"},
                    "template": value}  # fmt: skip
        try:
            kubernetes_validate.validate(document, "1.30", strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [f"{path}: {exc.message}"]
        return []
    if isinstance(schema, list):
        return [
            found for index, item in enumerate(value)
            for found in unknown_fields(item, schema[0], f"{path}[{index}]")
        ]  # fmt: skip
    assert isinstance(schema, dict) and isinstance(value, dict), path
    found = [f"{path}.{key}" for key in value if key not in schema]
    for key, item in value.items():
        if key in schema:
            found += unknown_fields(item, schema[key], f"{path}.{key}")
    return found


def train_job_dropped(obj: dict[str, Any]) -> dict[str, Any]:
    """What Kubeflow Trainer's models drop from ``obj`` (nothing when every field is one
    of theirs), by comparing the object with its round trip through them."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    parsed = TrainerV1alpha1TrainJob.from_dict(obj)
    assert parsed is not None
    again = parsed.to_dict()
    return _difference(obj, again)


def _difference(before: Any, after: Any) -> dict[str, Any]:
    if isinstance(before, dict) and isinstance(after, dict):
        found: dict[str, Any] = {}
        for key, value in before.items():
            if key not in after:
                found[key] = value
            else:
                inner = _difference(value, after[key])
                if inner:
                    found[key] = inner
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        found = {}
        for index, (a, b) in enumerate(zip(before, after, strict=True)):
            inner = _difference(a, b)
            if inner:
                found[str(index)] = inner
        return found
    return {} if before == after else {"value": before}
