"""The operator end to end: the real kopf and the real ``kubernetes`` client against kmock's
Kubernetes emulator, with usage records in a real throwaway PostgreSQL. The tests stand in
for the other controllers: they mark Jobs finished and give pods their termination
messages."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock
import kopf
import pytest

from afs.continuous import UsageLogger
from afs.continuous.kube.api.v1alpha1 import GROUP, VERSION, LearningLoopSpec
from afs.continuous.kube.client import KubeClient
from afs.continuous.kube.controllers import OperatorConfig, make_registry
from afs.continuous.kube.metrics import OperatorMetrics
from afs.continuous.kube.training.job import training_job
from afs.continuous.timeutil import Clock, utc_now
from tests.kube.emulator import ApiServerEmulator, stop_operator
from tests.kube.pods import restricted
from tests.kube.structural import pruned_fields, schema_of
from tests.postgres_server import fresh_schema, restart_server, unreachable_url

pytestmark = [pytest.mark.kmock(cls=ApiServerEmulator), pytest.mark.timeout(120)]
NAMESPACE = "ml"
RESOURCES = [
    ("v1/namespaces", "Namespace", False),
    ("v1/events", "Event", True),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False),
    (f"{GROUP}/{VERSION}/learningloops", "LearningLoop", True),
    (f"{GROUP}/{VERSION}/abtests", "ABTest", True),
    (f"{GROUP}/{VERSION}/modelversions", "ModelVersion", True),
    ("batch/v1/jobs", "Job", True),
    ("v1/serviceaccounts", "ServiceAccount", True),
    ("v1/pods", "Pod", True),
    ("v1/secrets", "Secret", True),
    ("gateway.networking.k8s.io/v1/httproutes", "HTTPRoute", True),
]


def _register(emulator: kmock.KubernetesEmulator) -> None:
    for resource, kind, namespaced in RESOURCES:
        info = emulator.resources[resource]
        info.kind = kind
        info.namespaced = namespaced
        info.verbs = {"list", "watch", "get", "create", "patch", "update", "delete"}
        if resource.startswith(GROUP) or resource == "batch/v1/jobs":
            info.subresources = {"status"}


METRICS = OperatorMetrics()


@contextlib.asynccontextmanager
async def operator(
    emulator: kmock.KubernetesEmulator,
    *,
    database_retry_seconds: float = 10.0,
    clock: Clock = utc_now,
    metrics: OperatorMetrics = METRICS,
    poll_seconds: float = 0.2,
) -> AsyncIterator[KubeClient]:
    url = str(emulator.url).rstrip("/")
    kube = KubeClient.connect(host=url)
    config = OperatorConfig(
        poll_seconds=poll_seconds, database_retry_seconds=database_retry_seconds
    )
    registry = make_registry(config, kube, metrics=metrics, clock=clock)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry, standalone=True, clusterwide=True, ready_flag=ready, stop_flag=stop
        )
    )
    await asyncio.wait_for(ready.wait(), 20)
    try:
        yield kube
    finally:
        await stop_operator(task, stop)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """The sync client must not block the loop the emulator serves on."""
    return await asyncio.to_thread(fn, *args)


def _event_reasons(emulator: kmock.KubernetesEmulator) -> set[str]:
    """Reasons of the Events posted so far, read from the requests the emulator served
    (it stores only the first of kopf's Events: they share a generated name it does not
    expand, so the others are refused with a conflict after they were sent)."""
    return {
        str((request.data or {}).get("reason"))
        for request in list(emulator)
        if request.method == "POST"
        and request.resource is not None
        and request.resource.plural == "events"
    }


async def _eventually(probe: Callable[[], Any], *, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await asyncio.to_thread(probe)
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)


def _loop_manifest(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"name": "nayru-v1"},
        "database": {"urlSecretRef": {"name": "usage-db", "key": "url"}},
        "triggers": {
            "minNewSamples": 20, "minSamplesForRetrain": 10, "enableScheduled": False,
            "enableQualityDrop": False, "cooldownHours": 24,
        },
        "training": {
            "backoffLimit": 0,
            "template": restricted({"name": "trainer", "image": "trainer:1"}),
        },
        "checkInterval": "1s",
    }  # fmt: skip
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LearningLoop",
        "metadata": {
            "name": "nayru",
            "namespace": NAMESPACE,
            "uid": "loop-uid-1",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": body,
    }


@pytest.fixture
def usage_db() -> Any:
    with fresh_schema() as url:
        with UsageLogger(url=url) as logger:
            logger.log_many(
                [
                    {"query": f"q{i}", "response": f"a{i}", "model": "nayru-v1",
                     "quality_score": 0.9, "user_feedback": 1}
                    for i in range(30)
                ]
            )  # fmt: skip
        yield url


async def _database_secret(kube: KubeClient, url: str) -> None:
    """The Secret ``usage-db`` holding the usage database's URL under ``url``."""
    secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "usage-db", "namespace": NAMESPACE},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }  # fmt: skip
    await _call(kube.core.create_namespaced_secret, NAMESPACE, secret)


async def _setup(kube: KubeClient, url: str | None, loop: dict[str, Any]) -> None:
    """The database URL's Secret (none when ``url`` is None) and the LearningLoop."""
    if url is not None:
        await _database_secret(kube, url)
    await _call(
        kube.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "learningloops",
        loop,
    )  # fmt: skip


def _first_job(manifest: dict[str, Any], *, uid: str) -> dict[str, Any]:
    """Run 1's Job of the loop ``manifest`` as the operator builds it, owned by ``uid``."""
    return training_job(
        loop=manifest["metadata"]["name"], namespace=NAMESPACE, uid=uid,
        spec=LearningLoopSpec.model_validate(manifest["spec"]), run=1, since=None,
    )  # fmt: skip


def _loop(kube: KubeClient) -> dict[str, Any]:
    obj: dict[str, Any] = kube.custom.get_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "learningloops", "nayru"
    )
    return obj


def _trainer_pod(name: str, *, succeeded: bool, message: str | None) -> dict[str, Any]:
    """The Job's pod as the kubelet leaves it: both containers terminated, with messages."""
    report = json.dumps({"final_count": 30, "sha256": "ab" * 32})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-abcde", "namespace": NAMESPACE, "labels": {"job-name": name},
                     "resourceVersion": "1"},
        "spec": {"containers": [{"name": "trainer", "image": "trainer:1"}]},
        "status": {
            "initContainerStatuses": [
                {"name": "export-dataset", "image": "afs", "imageID": "afs", "ready": False,
                 "restartCount": 0, "state": {"terminated": {"exitCode": 0, "message": report}}}
            ],
            "containerStatuses": [
                {"name": "trainer", "image": "trainer:1", "imageID": "trainer", "ready": False,
                 "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0 if succeeded else 1, "message": message}}}
            ],
        },
    }  # fmt: skip


def _job_status(*, succeeded: bool) -> dict[str, Any]:
    condition = {"type": "Complete" if succeeded else "Failed", "status": "True"}
    return {"conditions": [condition], "succeeded": int(succeeded)}


def _finish_job(kube: KubeClient, name: str, *, succeeded: bool, message: str | None) -> None:
    """The pod's end first, then the Job's, as in a cluster: the Job controller marks a
    Job complete only after its pod terminated (the other order let the operator read a
    finished Job without its report under load: a flaky RunFailed)."""
    kube.core.create_namespaced_pod(
        NAMESPACE, _trainer_pod(name, succeeded=succeeded, message=message)
    )
    kube.batch.patch_namespaced_job_status(
        name, NAMESPACE, {"status": _job_status(succeeded=succeeded)}
    )


async def test_a_learning_loop_trains_and_records_a_model_version(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    _register(kmock)
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, _loop_manifest())
        job = await _eventually(lambda: kube.get_job(NAMESPACE, "nayru-run-1"))
        assert job["metadata"]["ownerReferences"][0]["name"] == "nayru"
        init = job["spec"]["template"]["spec"]["initContainers"][0]
        assert init["command"][:3] == ["afs-continuous", "export", "/data/dataset.jsonl"]
        # the trainer runs as an account of its own, with no rights and no token
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == "afs-continuous-training"
        account = kmock.objects["v1/serviceaccounts", NAMESPACE, "afs-continuous-training"]
        assert account["automountServiceAccountToken"] is False
        status = await _eventually(lambda: (_loop(kube).get("status") or {}).get("currentRun"))
        assert status["job"] == "nayru-run-1"
        assert (await _call(_loop, kube))["status"]["lastTrigger"]["type"] == "sample_count"

        report = json.dumps({"modelUri": "s3://models/nayru/run-1", "metrics": {"loss": 0.25}})
        await _call(lambda: _finish_job(kube, "nayru-run-1", succeeded=True, message=report))
        version = await _eventually(
            lambda: _get_custom(kube, "modelversions", "nayru-run-1"), timeout=20
        )
        assert version["spec"]["uri"] == "s3://models/nayru/run-1"
        assert version["spec"]["metrics"] == {"loss": 0.25}
        assert version["spec"]["lineage"] == {
            "loop": "nayru", "run": 1, "job": "nayru-run-1", "sampleCount": 30,
            "datasetSha256": "ab" * 32,
        }  # fmt: skip
        final = await _eventually(
            lambda: (s := _loop(kube).get("status") or {}).get("runs", {}).get("succeeded") and s
        )
        assert final.get("currentRun") is None
        assert final.get("challenger") is None  # no traffic to test it on: a Candidate
        assert final["runs"]["recent"][-1]["result"] == "Succeeded"
        stage = await _eventually(
            lambda: (_get_custom(kube, "modelversions", "nayru-run-1") or {}).get("status")
        )
        assert stage["stage"] == "Candidate"
        assert await _call(_pruned_in_a_cluster, kube) == []
        await _eventually(lambda: {"RunStarted", "RunSucceeded"} <= _event_reasons(kmock))
    sample = METRICS.registry.get_sample_value
    assert (sample("afs_loop_runs_total", {"outcome": "succeeded"}) or 0) >= 1
    assert (sample("afs_loop_triggers_fired_total", {"type": "sample_count"}) or 0) >= 1


def _pruned_in_a_cluster(kube: KubeClient, *, expect: str = "LearningLoop") -> list[str]:
    """Fields the operator wrote that a real API server would drop (tests.kube.structural);
    at least one object of the kind ``expect`` must be there to be looked at."""
    found = []
    for plural, kind in (
        ("learningloops", "LearningLoop"), ("abtests", "ABTest"), ("modelversions", "ModelVersion")
    ):  # fmt: skip
        listing = kube.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)
        assert listing["items"] or kind != expect, "nothing was checked"
        for obj in listing["items"]:
            name = obj["metadata"]["name"]
            if kind == "LearningLoop":  # the user writes its spec, the operator its status
                obj = {"status": obj.get("status") or {}}
            found += [f"{kind}/{name}: {p}" for p in pruned_fields(obj, schema_of(kind))]
    return found


def _get_custom(kube: KubeClient, plural: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.rest import ApiException

    try:
        obj: dict[str, Any] = kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, plural, name
        )
        return obj
    except ApiException:
        return None


PROMOTION: dict[str, Any] = {
    "mode": "manual",
    "champion": "nayru-baseline",
    "traffic": {
        "provider": "gateway-api",
        "targetRef": {
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "name": "nayru",
        },
    },
    "abTest": {"initialChallengerTraffic": 0.05, "minDurationHours": 12},
}  # fmt: skip


async def test_a_new_version_with_a_champion_and_traffic_gets_an_ab_test(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    _register(kmock)
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, _loop_manifest(promotion=PROMOTION))
        await _eventually(lambda: kube.get_job(NAMESPACE, "nayru-run-1"))
        report = json.dumps({"modelUri": "s3://models/nayru/run-1"})
        await _call(lambda: _finish_job(kube, "nayru-run-1", succeeded=True, message=report))
        test = await _eventually(lambda: _get_custom(kube, "abtests", "nayru-run-1"))
        assert test["spec"]["champion"] == {"modelVersion": "nayru-baseline"}
        assert test["spec"]["challenger"] == {"modelVersion": "nayru-run-1"}
        assert test["spec"]["traffic"] == {
            **PROMOTION["traffic"],
            "onDrift": "reassert",
            "createRevision": False,
        }
        assert test["spec"]["steps"] == [{"weight": 5}]
        assert test["spec"]["decision"]["minDurationHours"] == 12
        assert test["spec"]["promotion"] == "manual"
        assert test["metadata"]["ownerReferences"][0]["name"] == "nayru"
        status = await _eventually(
            lambda: (s := _loop(kube).get("status") or {}).get("challenger") and s
        )
        assert (status["challenger"], status["champion"]) == ("nayru-run-1", "nayru-baseline")
        version = await _eventually(
            lambda: (
                (v := _get_custom(kube, "modelversions", "nayru-run-1") or {}).get("status") and v
            )
        )
        assert version["status"]["stage"] == "Challenger"
        assert version["spec"]["lineage"]["parent"] == "nayru-baseline"
        assert await _call(_pruned_in_a_cluster, kube) == []
        await _eventually(lambda: {"ABTestCreated", "Stage"} <= _event_reasons(kmock))


async def test_an_operator_that_died_after_creating_the_job_adopts_it(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    """The previous operator created run 1's Job and died before recording it: the next
    one fires the same trigger, finds the Job by its deterministic name, and adopts it."""
    _register(kmock)
    manifest = _loop_manifest()
    orphan = _first_job(manifest, uid="loop-uid-1")
    orphan["metadata"]["annotations"] = {"created-by": "the operator that died"}
    async with operator(kmock) as kube:
        await _call(kube.batch.create_namespaced_job, NAMESPACE, orphan)
        await _setup(kube, usage_db, manifest)
        run = await _eventually(lambda: (_loop(kube).get("status") or {}).get("currentRun"))
        assert run["job"] == "nayru-run-1"
        jobs = await _call(kube.batch.list_namespaced_job, NAMESPACE)
        assert [j.metadata.name for j in jobs.items] == ["nayru-run-1"]
        job = await _call(kube.get_job, NAMESPACE, "nayru-run-1")
        assert job["metadata"]["annotations"] == {"created-by": "the operator that died"}


async def test_a_run_that_finished_while_the_operator_was_down_is_recorded_once(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    """The operator started run 1 and stopped; the Job finished before the next one
    started. The next one records the run once and does not fire the trigger again."""
    _register(kmock)
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, _loop_manifest())
        await _eventually(lambda: (_loop(kube).get("status") or {}).get("currentRun"))
    # No operator is running: the Job controller and the kubelet finish the run.
    job_key = ("batch/v1/jobs", NAMESPACE, "nayru-run-1")
    job = copy.deepcopy(kmock.objects[job_key].raw)
    job["status"] = _job_status(succeeded=True)
    kmock.objects[job_key] = job
    report = json.dumps({"modelUri": "s3://models/nayru/run-1"})
    pod = _trainer_pod("nayru-run-1", succeeded=True, message=report)
    kmock.objects["v1/pods", NAMESPACE, pod["metadata"]["name"]] = pod

    async with operator(kmock) as kube:
        status = await _eventually(
            lambda: (s := _loop(kube).get("status") or {}).get("runs", {}).get("succeeded") and s
        )
        assert status.get("currentRun") is None
        await asyncio.sleep(1.5)  # several checks later
        jobs = await _call(kube.batch.list_namespaced_job, NAMESPACE)
        assert [j.metadata.name for j in jobs.items] == ["nayru-run-1"]
        versions = await _call(
            kube.custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "modelversions"
        )
        assert [v["metadata"]["name"] for v in versions["items"]] == ["nayru-run-1"]
        assert versions["items"][0]["spec"]["uri"] == "s3://models/nayru/run-1"
        assert (await _call(_loop, kube))["status"]["runs"]["succeeded"] == 1


async def test_a_suspended_loop_checks_nothing_until_resumed(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    _register(kmock)
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, _loop_manifest(suspend=True))
        status = await _eventually(
            lambda: (s := _loop(kube).get("status") or {}).get("phase") == "Suspended" and s
        )
        [ready] = [c for c in status["conditions"] if c["type"] == "Ready"]
        assert (ready["status"], ready["reason"]) == ("True", "Suspended")
        assert status["observedGeneration"] == 1
        await asyncio.sleep(1.5)  # enough data to fire, and several ticks: still nothing
        assert await _call(kube.get_job, NAMESPACE, "nayru-run-1") is None
        assert (await _call(_loop, kube))["status"].get("lastCheckTime") is None

        await _call(
            kube.custom.patch_namespaced_custom_object, GROUP, VERSION, NAMESPACE,
            "learningloops", "nayru", {"spec": {"suspend": False}},
        )  # fmt: skip
        await _eventually(lambda: kube.get_job(NAMESPACE, "nayru-run-1"))


async def test_a_trigger_on_too_little_data_starts_no_job_and_backs_off(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    """The sample rule fires at 20; 30 samples are fewer than the 50 a run needs: no
    Job, the condition says why, and the attempt counts for the back-off."""
    _register(kmock)
    triggers = {
        "minNewSamples": 20, "minSamplesForRetrain": 50, "enableScheduled": False,
        "enableQualityDrop": False, "cooldownHours": 24, "retryBackoffHours": 1,
    }  # fmt: skip
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, _loop_manifest(triggers=triggers))
        status = await _eventually(
            lambda: any(
                c["reason"] == "NotEnoughData" for c in (_loop(kube).get("status") or {}).get(
                    "conditions", [])
            ) and _loop(kube)["status"]
        )  # fmt: skip
        [ready] = [c for c in status["conditions"] if c["type"] == "Ready"]
        assert "only 30 training samples; need min_samples_for_retrain=50" in ready["message"]
        await asyncio.sleep(1.5)  # several checks: backing off, still no Job
        assert await _call(kube.get_job, NAMESPACE, "nayru-run-1") is None
        later = (await _call(_loop, kube))["status"]
        [ready] = [c for c in later["conditions"] if c["type"] == "Ready"]
        assert "backing off" in ready["message"]
        await _eventually(lambda: "NotEnoughData" in _event_reasons(kmock))


async def test_a_job_name_still_held_by_a_deleted_loop_is_not_adopted(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    """A LearningLoop deleted and applied again under the same name: the old one's Job is
    still there until garbage collection removes it. The new loop waits for the name
    instead of taking that run for its own."""
    _register(kmock)
    manifest = _loop_manifest()
    old = _first_job(manifest, uid="the-deleted-loop")
    async with operator(kmock) as kube:
        await _call(kube.batch.create_namespaced_job, NAMESPACE, old)
        await _setup(kube, usage_db, manifest)
        conditions = await _eventually(
            lambda: [
                c for c in (_loop(kube).get("status") or {}).get("conditions") or []
                if c["reason"] == "NameTaken"
            ]
        )  # fmt: skip
        assert "Job nayru-run-1" in conditions[0]["message"]
        assert (await _call(_loop, kube))["status"].get("currentRun") is None
        await _eventually(lambda: "NameTaken" in _event_reasons(kmock))

        await _call(kube.batch.delete_namespaced_job, "nayru-run-1", NAMESPACE)
        run = await _eventually(lambda: (_loop(kube).get("status") or {}).get("currentRun"))
        assert run["job"] == "nayru-run-1"
        job = await _call(kube.get_job, NAMESPACE, "nayru-run-1")
        assert job["metadata"]["ownerReferences"][0]["uid"] == "loop-uid-1"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"checkInterval": "soon"}, "checkInterval"),
        ({"triggers": {"minNewSampels": 20}}, "triggers.minNewSampels"),
        ({"database": None}, "database"),
        (
            {
                "training": {
                    "template": {
                        "spec": {"hostPID": True, "containers": [{"name": "t", "image": "t"}]}
                    }
                }
            },
            "training.template.spec.hostPID: must be unset or false (Pod Security baseline: "
            "Host Namespaces)",
        ),
        ({"checkInterval": "9999999d"}, "checkInterval"),
    ],
    ids=["bad-interval", "misspelt-trigger", "no-database", "host-pid", "endless-interval"],
)
async def test_an_invalid_spec_sets_a_condition_instead_of_crashing(
    kmock: kmock.KubernetesEmulator, usage_db: str, change: dict[str, Any], field: str
) -> None:
    """The emulator does not enforce the CRD schema (an API server would refuse these
    at apply time): the operator's own validation is what stands here."""
    _register(kmock)
    manifest = _loop_manifest(**change)
    manifest["spec"] = {k: v for k, v in manifest["spec"].items() if v is not None}
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, manifest)
        conditions = await _eventually(lambda: (_loop(kube).get("status") or {}).get("conditions"))
        [ready] = [c for c in conditions if c["type"] == "Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert ready["message"].startswith(field)
        await _eventually(lambda: "InvalidSpec" in _event_reasons(kmock))
        assert await _call(kube.get_job, NAMESPACE, "nayru-run-1") is None
        assert await _call(_pruned_in_a_cluster, kube) == []


@pytest.mark.parametrize(
    ("secret_url", "message"),
    [
        (None, "secret ml/usage-db not found"),
        (
            unreachable_url(password="s3cret"),
            "the URL in Secret ml/usage-db key url cannot be reached: connection refused",
        ),
        ("/etc/s3cret", "the URL in Secret ml/usage-db key url is not a postgresql:// URL"),
        ("token=s3cret", "the URL in Secret ml/usage-db key url is not a postgresql:// URL"),
        ("postgresql://u:a s3cret@db/x", "the URL in Secret ml/usage-db key url is malformed"),
    ],
    ids=["no-secret", "unreachable", "a-path", "another-secret", "malformed"],
)
async def test_an_unusable_database_sets_a_condition_without_the_password(
    kmock: kmock.KubernetesEmulator, secret_url: str | None, message: str
) -> None:
    _register(kmock)
    async with operator(kmock) as kube:
        await _setup(kube, secret_url, _loop_manifest())
        conditions = await _eventually(lambda: (_loop(kube).get("status") or {}).get("conditions"))
        [ready] = [c for c in conditions if c["type"] == "Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "DatabaseUnavailable")
        assert message in ready["message"]
        assert "s3cret" not in ready["message"]
        await _eventually(lambda: "DatabaseUnavailable" in _event_reasons(kmock))
        assert await _call(kube.get_job, NAMESPACE, "nayru-run-1") is None


@pytest.mark.skipif(
    bool(os.environ.get("AFS_TEST_DATABASE_URL")),
    reason="stops the server, which only the test's own throwaway server allows",
)
async def test_a_database_outage_is_a_condition_and_the_loop_recovers(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    never = {"minNewSamples": 10**6, "enableScheduled": False, "enableQualityDrop": False}
    _register(kmock)
    async with operator(kmock, database_retry_seconds=1.0) as kube:
        await _setup(kube, usage_db, _loop_manifest(triggers=never))

        def ready_reason() -> str | None:
            conditions = (_loop(kube).get("status") or {}).get("conditions") or []
            return next((c["reason"] for c in conditions if c["type"] == "Ready"), None)

        await _eventually(lambda: ready_reason() == "Checked")
        outage = asyncio.create_task(asyncio.to_thread(restart_server, stopped_for=5.0))
        await _eventually(lambda: ready_reason() == "DatabaseUnavailable", timeout=30)
        await outage
        await _eventually(lambda: ready_reason() == "Checked", timeout=30)
        assert await _call(kube.get_job, NAMESPACE, "nayru-run-1") is None


FORBIDDEN = kmock.KubernetesError(  # what an API server says when RBAC is missing
    status=403,
    reason="Forbidden",
    message='jobs.batch is forbidden: User "system:serviceaccount:afs-system:afs-continuous" '
    'cannot create resource "jobs" in API group "batch" in the namespace "ml"',
)


async def test_a_refused_job_is_a_condition_with_the_server_s_reason(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    """Missing RBAC, say: the check is recorded, the trigger fires again at the next
    check (an hour here), and the status says what was refused and why."""
    _register(kmock)
    kmock["create", kmock.resource("batch", "v1", "jobs")] << FORBIDDEN
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, _loop_manifest(checkInterval="1h"))
        conditions = await _eventually(
            lambda: [
                c for c in (_loop(kube).get("status") or {}).get("conditions") or []
                if c["reason"] == "KubernetesApiError"
            ]
        )  # fmt: skip
        assert conditions[0]["message"] == (
            "cannot create Job ml/nayru-run-1: 403 jobs.batch is forbidden: User "
            '"system:serviceaccount:afs-system:afs-continuous" cannot create resource "jobs" '
            'in API group "batch" in the namespace "ml"'
        )
        status = (await _call(_loop, kube))["status"]
        assert status.get("currentRun") is None and status["lastCheckTime"]
        await _eventually(lambda: "KubernetesApiError" in _event_reasons(kmock))


async def test_a_failed_trainer_is_recorded_and_backs_off(
    kmock: kmock.KubernetesEmulator, usage_db: str
) -> None:
    _register(kmock)
    async with operator(kmock) as kube:
        await _setup(kube, usage_db, _loop_manifest())
        await _eventually(lambda: kube.get_job(NAMESPACE, "nayru-run-1"))
        await _call(lambda: _finish_job(kube, "nayru-run-1", succeeded=False, message="OOM"))
        status = await _eventually(
            lambda: (s := _loop(kube).get("status") or {}).get("runs", {}).get("failed") and s
        )
        assert status["runs"]["recent"][-1]["result"] == "Failed"
        [last] = [c for c in status["conditions"] if c["type"] == "LastRunSucceeded"]
        assert last["status"] == "False"
        await asyncio.sleep(1.5)  # several checks later: backing off, no second Job
        assert await _call(kube.get_job, NAMESPACE, "nayru-run-2") is None
        assert await _call(_pruned_in_a_cluster, kube) == []
        await _eventually(lambda: "RunFailed" in _event_reasons(kmock))
    assert failed_runs_in_a_row(usage_db) == 1


def failed_runs_in_a_row(url: str) -> int:
    """What the trigger's state in the database says (it backs off by it)."""
    with UsageLogger(url=url) as logger:
        state = logger.store.get_state("k8s/ml/nayru")
    assert state is not None
    return int(state["consecutive_failures"])


async def test_the_operator_command_serves_health_and_metrics(
    kmock: kmock.KubernetesEmulator, tmp_path: Any
) -> None:
    import socket
    import sys

    import aiohttp

    _register(kmock)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
                "clusters": [{"name": "emulator",
                              "cluster": {"server": str(kmock.url).rstrip("/")}}],
                "users": [{"name": "tester", "user": {"token": "x"}}],
                "contexts": [{"name": "emulator",
                              "context": {"cluster": "emulator", "user": "tester"}}],
            }
        )
    )  # fmt: skip
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "afs.continuous", "operator", "--all-namespaces",
        "--metrics-port", str(ports[0]), "--health-port", str(ports[1]),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{ports[1]}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "no /healthz"
                await asyncio.sleep(0.2)
            async with session.get(f"http://127.0.0.1:{ports[0]}/metrics") as response:
                text = await response.text()
        assert "afs_loop_reconcile_seconds" in text and "afs_loop_runs" in text
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
