"""The operator's only use of the ``kubernetes`` client: the few calls it needs, returning
plain dicts, with "already exists" and "not found" turned into ordinary results and any
other refusal into a :class:`KubeApiError` that says what was refused and why."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from kubernetes import client as k8s, config as k8s_config
from kubernetes.client.rest import ApiException

from afs.continuous.errors import ContinuousError
from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION
from afs.continuous.kube.routing.base import FIELD_MANAGER


class KubeApiError(ContinuousError):
    """The API server refused a call (forbidden, invalid, unavailable, …)."""


class SecretError(LookupError):
    """A Secret or its key cannot be read; the message names them, never the value."""


def _refused(exc: ApiException, action: str) -> KubeApiError:
    """An ApiException's text is the whole HTTP exchange; keep the status and the
    server's own message (a Kubernetes Status)."""
    detail = exc.reason or ""
    with suppress(ValueError, AttributeError):  # not a Status: keep the HTTP reason
        detail = json.loads(exc.body or "{}").get("message") or detail
    return KubeApiError(f"cannot {action}: {exc.status} {detail}".rstrip())


class KubeClient:
    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self.core = k8s.CoreV1Api(api)
        self.batch = k8s.BatchV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    @classmethod
    def connect(cls, host: str | None = None) -> KubeClient:
        """In a pod: the service account; else the kubeconfig; ``host`` overrides (tests)."""
        if host is not None:
            configuration = k8s.Configuration()
            configuration.host = host
            return cls(k8s.ApiClient(configuration))
        try:
            k8s_config.load_incluster_config()
        except k8s_config.ConfigException:
            try:
                k8s_config.load_kube_config(config_file=_kubeconfig())
            except (k8s_config.ConfigException, OSError) as exc:
                raise KubeApiError(f"no cluster to talk to: {exc}") from None
        return cls(k8s.ApiClient())

    @staticmethod
    def default_namespace() -> str:
        """The namespace a command acts in when none is given: the kubeconfig context's,
        or the pod's own in a cluster, else ``default``."""
        try:
            _, active = k8s_config.list_kube_config_contexts(config_file=_kubeconfig())
            return str((active or {}).get("context", {}).get("namespace") or "default")
        except (k8s_config.ConfigException, OSError):
            pass
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as file:
                return file.read().strip() or "default"
        except OSError:
            return "default"

    def _plain(self, obj: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return data

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:  # its text is the whole HTTP exchange: say what failed
            if exc.status == 404:
                raise SecretError(f"secret {namespace}/{name} not found") from None
            raise SecretError(
                f"cannot read secret {namespace}/{name}: {exc.status} {exc.reason}"
            ) from None
        data = (secret.data or {}).get(key)
        if data is None:
            raise SecretError(f"secret {namespace}/{name} has no key {key!r}")
        try:
            return base64.b64decode(data).decode("utf-8")
        except (ValueError, UnicodeDecodeError):  # the decoder's message quotes a byte
            raise SecretError(f"secret {namespace}/{name} key {key!r} is not UTF-8 text") from None

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(self.batch.read_namespaced_job, "Job", namespace, name)

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the Job, or return the one that already has its name (idempotent)."""
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            return self._plain(self.batch.create_namespaced_job(namespace, manifest))
        except ApiException as exc:
            if exc.status != 409:
                raise _refused(exc, f"create Job {namespace}/{name}") from None
        existing = self.get_job(namespace, name)
        if existing is None:  # deleted between the two calls: the next check creates it
            raise KubeApiError(f"cannot create Job {namespace}/{name}: it is being deleted")
        return existing

    def ensure_service_account(self, manifest: dict[str, Any]) -> None:
        """Create the ServiceAccount unless one of its name exists (whoever made it)."""
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            self.core.create_namespaced_service_account(namespace, manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise _refused(exc, f"create ServiceAccount {namespace}/{name}") from None

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(self.apps.read_namespaced_deployment, "Deployment", namespace, name)

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(self.core.read_namespaced_service, "Service", namespace, name)

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's Services (deploy mode checks their selectors)."""
        try:
            listing = self.core.list_namespaced_service(namespace)
        except ApiException as exc:
            raise _refused(exc, f"list Services in {namespace}") from None
        return [self._plain(item) for item in listing.items]

    def _read(
        self, read: Callable[[str, str], Any], kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        try:
            return self._plain(read(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _refused(exc, f"read {kind} {namespace}/{name}") from None

    def create_workload(self, manifest: dict[str, Any]) -> None:
        """Create a Deployment or Service; one of its name already there is left as it is
        (the caller read it before and checks whose it is)."""
        kind, meta = manifest["kind"], manifest["metadata"]
        create = {
            "Deployment": self.apps.create_namespaced_deployment,
            "Service": self.core.create_namespaced_service,
        }[kind]
        try:
            create(meta["namespace"], manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise _refused(exc, f"create {kind} {meta['namespace']}/{meta['name']}") from None

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        try:
            self.apps.patch_namespaced_deployment(
                name, namespace, {"spec": {"replicas": replicas}}, field_manager=FIELD_MANAGER
            )
        except ApiException as exc:
            if exc.status != 404:
                raise _refused(exc, f"scale Deployment {namespace}/{name}") from None

    def delete_workload(self, namespace: str, name: str) -> None:
        """Delete the Deployment and the Service of that name (gone already: fine)."""
        for kind, delete in (
            ("Deployment", self.apps.delete_namespaced_deployment),
            ("Service", self.core.delete_namespaced_service),
        ):
            try:
                delete(name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise _refused(exc, f"delete {kind} {namespace}/{name}") from None

    def pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The pods that carry all of ``labels``."""
        selector = ",".join(f"{key}={value}" for key, value in labels.items())
        try:
            pods = self.core.list_namespaced_pod(namespace, label_selector=selector)
        except ApiException as exc:
            raise _refused(exc, f"list the pods {selector} in {namespace}") from None
        items = [self._plain(p) for p in pods.items]
        # filter here too: not every API server (or emulator) honours the selector
        return [
            p for p in items
            if labels.items() <= ((p.get("metadata") or {}).get("labels") or {}).items()
        ]  # fmt: skip

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return self.pods(namespace, {"job-name": job})

    def create_custom_object(self, plural: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create one of our resources, or return the one that already has its name
        (idempotent: names are deterministic; the caller checks whose it is)."""
        return self.create_object(group=GROUP, version=VERSION, plural=plural, manifest=manifest)

    def create_object(
        self, *, group: str, version: str, plural: str, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        """Create any namespaced custom resource, or return the one that already has its
        name; a kind the cluster does not serve is a :class:`KindNotServedError`."""
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        action = f"create {plural}.{group} {namespace}/{name}"
        try:
            created: dict[str, Any] = self.custom.create_namespaced_custom_object(
                group, version, namespace, plural, manifest
            )
            return created
        except ApiException as exc:
            if exc.status == 404:
                raise KindNotServedError(f"cannot {action}: {group}/{version} {plural} is not "
                                         "served by this cluster") from None  # fmt: skip
            if exc.status != 409:
                raise _refused(exc, action) from None
        existing = self.get_object(
            group=group, version=version, plural=plural, namespace=namespace, name=name
        )
        if existing is None:  # deleted between the two calls: the next check creates it
            raise KubeApiError(f"cannot {action}: it is being deleted")
        return existing

    def serves(self, *, group: str, version: str, plural: str) -> bool:
        """Whether the cluster serves ``plural`` in ``group/version`` (its CRD is
        installed), from API discovery."""
        try:
            listing = self.custom.get_api_resources(group, version)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise _refused(exc, f"discover {group}/{version}") from None
        return any(resource.name == plural for resource in listing.resources or [])

    def get_custom_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One of our resources, or None when it does not exist."""
        return self.get_object(
            group=GROUP, version=VERSION, plural=plural, namespace=namespace, name=name
        )

    def get_object(
        self, *, group: str, version: str, plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """Any namespaced custom resource (a serving resource such as an HTTPRoute), or
        None when it, or its kind, does not exist."""
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                group, version, namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _refused(exc, f"read {plural}.{group} {namespace}/{name}") from None
        return found

    def json_patch(
        self,
        *,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        operations: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Apply an RFC 6902 patch; a failed ``test`` operation (someone else wrote in
        between) is a :class:`PatchConflictError`, to be re-read and decided again."""
        try:
            patched: dict[str, Any] = self.custom.patch_namespaced_custom_object(
                group, version, namespace, plural, name, operations, field_manager=FIELD_MANAGER
            )
        except ApiException as exc:
            action = f"patch {plural}.{group} {namespace}/{name}"
            if exc.status in (409, 422) or _test_failed(exc):
                raise PatchConflictError(str(_refused(exc, action))) from None
            raise _refused(exc, action) from None
        return patched

    def patch_custom_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> bool:
        """Merge ``status`` into one of our resources' status; False when it is gone."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status}
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise _refused(exc, f"patch the status of {plural} {namespace}/{name}") from None
        return True

    def patch_custom_object(
        self, plural: str, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A merge patch on one of our resources (the command line's actions)."""
        try:
            patched: dict[str, Any] = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, body
            )
        except ApiException as exc:
            if exc.status == 404:
                raise LookupError(f"{plural} {namespace}/{name} not found") from None
            raise _refused(exc, f"patch {plural} {namespace}/{name}") from None
        return patched

    def list_custom_objects(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        """Our resources in ``namespace``, or in every namespace when it is None."""
        try:
            if namespace is None:
                listing = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
            else:
                listing = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural
                )
        except ApiException as exc:
            raise _refused(exc, f"list {plural}") from None
        return list(listing.get("items") or [])


def unreachable(exc: Exception) -> str | None:
    """What a transport error says, in one line, when ``exc`` is one (urllib3's, after the
    client's retries): the cluster could not be reached. None for anything else."""
    import urllib3.exceptions

    if not isinstance(exc, urllib3.exceptions.HTTPError):
        return None
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "Errno" in text:
        text = text[text.index("[Errno") :].rstrip(")\"'")
    return f"cannot reach the cluster: {text}"


def quiet_transport_retries() -> None:
    """The client retries a refused connection three times, logging a traceback each
    time: a command says it once, after the last."""
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def _kubeconfig() -> str | None:
    """``KUBECONFIG`` as it is now (the client library reads it once, at import)."""
    return os.environ.get("KUBECONFIG") or None


class KindNotServedError(KubeApiError):
    """The cluster does not serve a kind (its CRD is not installed)."""


class PatchConflictError(KubeApiError):
    """A patch's ``test`` operation failed: the object changed since it was read."""


def _test_failed(exc: ApiException) -> bool:
    """Servers differ in how they report a failed ``test`` (422 Invalid, or 500 with the
    JSON-patch library's message)."""
    body = str(exc.body or "").lower()
    return any(text in body for text in ("testing value", "jsonpatchtestfailed", "test failed"))
