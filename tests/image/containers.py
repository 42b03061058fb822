"""Run the image as the chart runs it, with podman: the user, the read-only root, the
dropped capabilities, no privilege escalation, the command and its arguments, the
environment, the emptyDir and Secret volumes — all read from the rendered chart's
Deployment, not from a copy of it.

What a pod has and podman gives otherwise: the containers share a network namespace of
their own (slirp4netns) whose ``10.0.2.2`` is the host's loopback, where the tests' API
server emulator and PostgreSQL listen; the chart's container ports are published on the
host's loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from tests.docs_examples import ROOT
from tests.kube.test_chart import _render

IMAGE = "localhost/afs-continuous:test"
TRAINER_IMAGE = "localhost/afs-trainer:test"
#: the host's loopback, seen from a container (slirp4netns with allow_host_loopback)
HOST_LOOPBACK = "10.0.2.2"
NETWORK = "slirp4netns:allow_host_loopback=true"
CHART_VALUES = {
    "collector": {
        "enabled": True,
        "database": {"urlSecretRef": {"name": "usage-db", "key": "url"}},
        "token": {"secretRef": {"name": "collector-token", "key": "token"}},
    }
}


def missing_tools() -> str | None:
    """Why the image cannot be built and run here, or None."""
    absent = [t for t in ("buildah", "podman", "runc", "slirp4netns") if shutil.which(t) is None]
    if absent:
        return f"{', '.join(absent)} not installed (.ci/run installs them with apt-get)"
    if os.geteuid() != 0:
        return "building and running the image here needs root (chroot isolation, runc)"
    return None


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "scripts" / "containers.conf"))
    return env


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], env=environment(), capture_output=True, text=True,
        timeout=timeout, check=check,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ChartContainer:
    """One Deployment's pod and container, as the chart renders them."""

    pod: dict[str, Any]
    container: dict[str, Any]
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def rendered(cls, component: str) -> ChartContainer:
        for document in _render(CHART_VALUES):
            if document["kind"] != "Deployment":
                continue
            pod = document["spec"]["template"]["spec"]
            container = pod["containers"][0]
            if container["name"] == component:
                volumes = {v["name"]: v for v in pod.get("volumes", [])}
                return cls(pod=pod, container=container, volumes=volumes)
        raise LookupError(f"the chart renders no {component} container")

    @property
    def ports(self) -> dict[str, int]:
        return {p["name"]: int(p["containerPort"]) for p in self.container.get("ports", [])}

    def security_options(self) -> list[str]:
        """The pod's and the container's securityContext (the container's fields win) as
        podman options; a field this does not know is an error, so a new one in the chart
        or the Job is not silently left out."""
        context = {**self.pod.get("securityContext", {}), **self.container["securityContext"]}
        known = {
            "runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile",
            "allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities",
        }  # fmt: skip
        assert set(context) <= known, context
        assert context.get("runAsNonRoot") and context.get("runAsUser") != 0
        options = []
        if "runAsUser" in context:  # else the image's own USER, as in a pod
            group = context.get("runAsGroup")
            user = str(context["runAsUser"])
            options += ["--user", f"{user}:{group}" if group is not None else user]
        if context.get("readOnlyRootFilesystem"):
            # a pod's read-only root has no writable /tmp, /run unless a volume gives one
            options += ["--read-only", "--read-only-tmpfs=false"]
        for capability in context.get("capabilities", {}).get("drop", []):
            options += ["--cap-drop", capability]
        if context.get("allowPrivilegeEscalation") is False:
            options += ["--security-opt", "no-new-privileges"]
        assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault"  # podman's
        return options

    def run_options(
        self,
        *,
        secrets: dict[str, dict[str, str]],
        scratch: Path,
        published: dict[str, int],
        extra_env: dict[str, str] | None = None,
        extra_mounts: list[str] | None = None,
        shared: dict[str, Path] | None = None,
        image: str = IMAGE,
    ) -> list[str]:
        """``podman run`` options (before the image) and, after it, the arguments: the
        image, then the container's command and args as the chart gives them.
        ``shared``: emptyDir volumes that containers of one pod share, by host folder."""
        options = [*self.security_options(), "--network", NETWORK]
        shared_folders = shared or {}
        for name, port in published.items():
            options += ["--publish", f"127.0.0.1:{port}:{self.ports[name]}"]
        for variable in self.container.get("env", []):
            if "value" in variable:
                options += ["--env", f"{variable['name']}={variable['value']}"]
            else:
                ref = variable["valueFrom"]["secretKeyRef"]
                options += ["--env", f"{variable['name']}={secrets[ref['name']][ref['key']]}"]
        for name, value in (extra_env or {}).items():
            options += ["--env", f"{name}={value}"]
        for mount in self.container.get("volumeMounts", []):
            volume = self.volumes[mount["name"]]
            if "emptyDir" in volume and mount["name"] in shared_folders:
                options += ["--volume", f"{shared_folders[mount['name']]}:{mount['mountPath']}"]
            elif "emptyDir" in volume:
                options += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777"]
            elif "secret" in volume:
                folder = scratch / f"secret-{mount['name']}"
                folder.mkdir(parents=True, exist_ok=True)
                data = secrets[volume["secret"]["secretName"]]
                for item in volume["secret"].get("items", [{"key": k, "path": k} for k in data]):
                    target = folder / item["path"]
                    target.write_text(data[item["key"]])
                    target.chmod(0o644)
                folder.chmod(0o755)
                options += ["--volume", f"{folder}:{mount['mountPath']}:ro"]
            else:
                raise AssertionError(f"a volume kind the tests do not know: {volume}")
        for mount in extra_mounts or []:
            options += ["--volume", mount]
        command = self.container.get("command", [])
        options += ["--entrypoint", command[0]] if command else []
        return [*options, image, *command[1:], *self.container.get("args", [])]


def database_for_containers(url: str) -> tuple[str, list[str]]:
    """The test database's URL as a container reaches it, and the mounts that needs: a
    server on a Unix socket (the throwaway one) by its socket file alone (its folder is
    private to root), one on the host's loopback through 10.0.2.2."""
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    if socket_dir and socket_dir.startswith("/"):
        socket = f"{socket_dir}/.s.PGSQL.{parts.port or 5432}"
        return url, [f"{socket}:{socket}"]
    if parts.hostname in ("localhost", "127.0.0.1"):
        netloc = parts.netloc.replace(parts.hostname, HOST_LOOPBACK, 1)
        return urlunsplit(parts._replace(netloc=netloc)), []
    return url, []
