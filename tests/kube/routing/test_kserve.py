"""The KServe InferenceService router: the object read → patch written, table-driven, each
patch applied (RFC 6902). Objects follow KServe's canary rollout documentation (Serverless
``canaryTrafficPercent``; RawDeployment ``spec.canary`` of KServe 0.20)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonpatch
import pytest

from afs.continuous.kube.api.v1alpha1 import ArmWeights, RuleWeights
from afs.continuous.kube.routing import RECORD_ANNOTATION, Arms, RoutingError
from afs.continuous.kube.routing.kserve import KServeRouter
from tests.kube.provider_schemas import apply_checked

ROUTER = KServeRouter()
V1, V2 = "s3://models/nayru-v1", "s3://models/nayru-v2"
ARMS = Arms(
    "nayru-v1", "nayru-v2", champion_uri=V1, challenger_uri=V2,
    champion_usage="nayru-v1", challenger_usage="nayru-v2",
)  # fmt: skip


def _isvc(
    *,
    uri: str = V1,
    canary_percent: int | None = None,
    raw: bool = False,
    canary: list[dict[str, Any]] | None = None,
    framework: str = "model",
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    predictor: dict[str, Any] = {framework: {"storageUri": uri}}
    if framework == "model":  # the legacy framework shapes have neither field
        predictor["model"].update(runtime="kserve-sklearn", modelFormat={"name": "sklearn"})
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    annotations: dict[str, str] = {}
    if raw:
        annotations["serving.kserve.io/deploymentMode"] = "RawDeployment"
    if record is not None:
        annotations[RECORD_ANNOTATION] = json.dumps(record)
    spec: dict[str, Any] = {"predictor": predictor}
    if canary is not None:
        spec["canary"] = canary
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "nayru", "generation": 3, "annotations": annotations},
        "spec": spec,
    }  # fmt: skip


_apply = apply_checked  # every write checked against the provider's own schema


def _step(obj: dict[str, Any], challenger: int) -> dict[str, Any]:
    weights = ArmWeights(champion=100 - challenger, challenger=challenger)
    return _apply(obj, ROUTER.patch_weights(ROUTER.observe(obj, ARMS), weights))


# --- Serverless --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "live"),
    [
        (_isvc(), [ArmWeights(champion=100, challenger=0)]),
        (_isvc(canary_percent=0), [ArmWeights(champion=100, challenger=0)]),
        (_isvc(uri=V2, canary_percent=20), [ArmWeights(champion=80, challenger=20)]),
        (_isvc(uri=V2), [ArmWeights(champion=0, challenger=100)]),
        (_isvc(framework="sklearn"), [ArmWeights(champion=100, challenger=0)]),
    ],
    ids=["champion", "after-a-rollback", "canary", "rolled-out", "framework-shape"],
)
def test_serverless_weights_follow_the_uri_and_the_canary_percent(
    obj: dict[str, Any], live: list[ArmWeights]
) -> None:
    observed = ROUTER.observe(obj, ARMS)
    assert observed.found and not observed.missing and observed.weights == live


def test_a_step_switches_the_uri_and_sets_the_share() -> None:
    after = _step(_isvc(), 10)
    assert after["spec"]["predictor"]["model"]["storageUri"] == V2
    assert after["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert after["spec"]["predictor"]["model"]["modelFormat"] == {"name": "sklearn"}
    again = _step(after, 50)  # the next step writes the share only
    assert ROUTER.patch_weights(
        ROUTER.observe(after, ARMS), ArmWeights(champion=50, challenger=50)
    )[-1]["path"].endswith("canaryTrafficPercent")
    assert again["spec"]["predictor"]["canaryTrafficPercent"] == 50


def test_each_revision_says_which_arm_it_serves() -> None:
    """Usage attribution: the challenger's revision runs with the challenger's usage name,
    and after a rollback the restored spec with the champion's; other variables stay."""
    original = _isvc()
    original["spec"]["predictor"]["model"]["env"] = [{"name": "LOG_LEVEL", "value": "info"}]
    running = _step(original, 10)
    assert running["spec"]["predictor"]["model"]["env"] == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "AFS_MODEL_URI", "value": V2},
        {"name": "AFS_MODEL_VERSION", "value": "nayru-v2"},
    ]
    back = _apply(running, ROUTER.restore(ROUTER.observe(running, ARMS), []))
    assert back["spec"]["predictor"]["model"]["env"][1:] == [
        {"name": "AFS_MODEL_URI", "value": V1},
        {"name": "AFS_MODEL_VERSION", "value": "nayru-v1"},
    ]


COLLECTOR = "http://afs-collector.afs-system:8081/v1/kserve"


@pytest.mark.parametrize(
    ("url", "challenger_url", "champion_url"),
    [
        (f"{COLLECTOR}?model=nayru-v1", f"{COLLECTOR}?model=nayru-v2",
         f"{COLLECTOR}?model=nayru-v1"),
        (f"{COLLECTOR}?expert=asm", f"{COLLECTOR}?expert=asm&model=nayru-v2",
         f"{COLLECTOR}?expert=asm&model=nayru-v1"),
        ("http://message-dumper.default/", "http://message-dumper.default/",
         "http://message-dumper.default/"),
    ],
    ids=["collector", "other-parameters-kept", "another-sink-untouched"],
)  # fmt: skip
def test_a_logger_sending_to_the_collector_names_the_arm_of_its_revision(
    url: str, challenger_url: str, champion_url: str
) -> None:
    original = _isvc()
    original["spec"]["predictor"]["logger"] = {"mode": "all", "url": url}
    running = _step(original, 10)
    assert running["spec"]["predictor"]["logger"] == {"mode": "all", "url": challenger_url}
    back = _apply(running, ROUTER.restore(ROUTER.observe(running, ARMS), []))
    assert back["spec"]["predictor"]["logger"]["url"] == champion_url


def test_a_raw_canary_logs_under_the_challenger() -> None:
    original = _isvc(raw=True)
    original["spec"]["predictor"]["logger"] = {"mode": "all", "url": f"{COLLECTOR}?model=a"}
    (entry,) = _step(original, 25)["spec"]["canary"]
    assert entry["predictor"]["logger"] == {"mode": "all", "url": f"{COLLECTOR}?model=nayru-v2"}


def test_the_legacy_framework_shape_is_written_where_it_is() -> None:
    after = _step(_isvc(framework="sklearn"), 10)
    assert after["spec"]["predictor"]["sklearn"]["storageUri"] == V2
    assert "model" not in after["spec"]["predictor"]


def test_serverless_promotion_removes_the_canary_percent() -> None:
    running = _step(_isvc(), 30)
    promoted = _apply(running, ROUTER.promote(ROUTER.observe(running, ARMS)))
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert promoted["spec"]["predictor"]["model"]["storageUri"] == V2


def test_serverless_rollback_pins_the_champion_revision_and_its_uri() -> None:
    original = _isvc()
    running = _step(original, 30)
    observed = ROUTER.observe(running, ARMS)
    back = _apply(running, ROUTER.restore(observed, ROUTER.observe(original, ARMS).original()))
    assert back["spec"]["predictor"]["canaryTrafficPercent"] == 0  # not the rejected revision
    assert back["spec"]["predictor"]["model"]["storageUri"] == V1


def test_the_original_remembers_an_unset_canary_percent() -> None:
    assert ROUTER.observe(_isvc(), ARMS).original() == [
        RuleWeights(rule=0, champion=None, challenger=None)
    ]


def test_every_write_tests_the_uri_it_read() -> None:
    """Someone rolling out another model in between makes the API server refuse ours."""
    obj = _isvc()
    ops = ROUTER.patch_weights(ROUTER.observe(obj, ARMS), ArmWeights(champion=90, challenger=10))
    moved = copy.deepcopy(obj)
    moved["spec"]["predictor"]["model"]["storageUri"] = "s3://models/hotfix"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(moved, ops)


# --- RawDeployment -----------------------------------------------------------------------


def test_raw_mode_adds_a_named_canary_copied_from_the_predictor() -> None:
    after = _step(_isvc(raw=True), 25)
    (entry,) = after["spec"]["canary"]
    assert entry == {
        "trafficPercent": 25,
        "predictor": {"name": "nayru-v2", "model": {
            "storageUri": V2, "runtime": "kserve-sklearn", "modelFormat": {"name": "sklearn"},
            "name": "",  # required by KServe's CRD, written as its webhook does
            "env": [{"name": "AFS_MODEL_URI", "value": V2},
                    {"name": "AFS_MODEL_VERSION", "value": "nayru-v2"}]}},
    }  # fmt: skip
    assert after["spec"]["predictor"]["model"]["storageUri"] == V1
    assert "canaryTrafficPercent" not in after["spec"]["predictor"]  # ignored in raw mode
    assert ROUTER.observe(after, ARMS).weights == [ArmWeights(champion=75, challenger=25)]
    assert _step(after, 50)["spec"]["canary"][0]["trafficPercent"] == 50


def test_raw_mode_leaves_other_canaries_alone() -> None:
    other = {
        "trafficPercent": 0,
        "predictor": {
            "name": "experimental",
            "model": {"name": "", "modelFormat": {"name": "onnx"}, "storageUri": "s3://models/x"},
        },
    }
    obj = _isvc(raw=True, canary=[other])
    after = _step(obj, 10)
    assert after["spec"]["canary"][0] == other and len(after["spec"]["canary"]) == 2
    back = _apply(after, ROUTER.restore(ROUTER.observe(after, ARMS), []))
    assert back == obj


@pytest.mark.parametrize("existing", [None, []], ids=["no-list", "empty-list"])
def test_raw_rollback_drops_the_entry(existing: list[dict[str, Any]] | None) -> None:
    obj = _isvc(raw=True, canary=existing)
    after = _step(obj, 10)
    back = _apply(after, ROUTER.restore(ROUTER.observe(after, ARMS), []))
    assert "canary" not in back["spec"]  # no list and an empty list mean the same to KServe


def test_raw_promotion_makes_the_challenger_the_predictor() -> None:
    after = _step(_isvc(raw=True), 10)
    promoted = _apply(after, ROUTER.promote(ROUTER.observe(after, ARMS)))
    assert promoted["spec"]["predictor"]["model"]["storageUri"] == V2
    assert "canary" not in promoted["spec"]
    assert ROUTER.observe(promoted, ARMS).weights == [ArmWeights(champion=0, challenger=100)]


def test_a_status_deployment_mode_counts_as_the_annotation() -> None:
    obj = _isvc()
    obj["status"] = {"deploymentMode": "Standard"}
    assert "canary" in _step(obj, 10)["spec"]


# --- what cannot carry a test ----------------------------------------------------------


def test_an_older_kserve_that_pruned_the_canary_is_unsupported() -> None:
    """Our record says a step was written; the API server kept no ``spec.canary``."""
    record = {"test": "ns/nayru-v2", "phase": "Running", "step": 0}
    observed = ROUTER.observe(_isvc(raw=True, record=record), ARMS)
    assert "KServe 0.20" in observed.unsupported


def test_a_modelmesh_inference_service_is_unsupported() -> None:
    obj = _isvc()
    obj["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = "ModelMesh"
    assert "ModelMesh" in ROUTER.observe(obj, ARMS).unsupported


def test_a_custom_container_predictor_is_unsupported() -> None:
    obj = _isvc()
    obj["spec"]["predictor"] = {"containers": [{"image": "registry/nayru:1"}]}
    observed = ROUTER.observe(obj, ARMS)
    assert "storageUri" in observed.unsupported and not observed.rules


def test_a_uri_of_neither_arm_is_named() -> None:
    observed = ROUTER.observe(_isvc(uri="s3://models/other"), ARMS)
    assert observed.missing == ("either arm's uri (storageUri is 's3://models/other')",)
    assert ROUTER.restore(observed, []) == [] and ROUTER.promote(observed) == []


def test_without_the_versions_uris_nothing_is_decided() -> None:
    observed = ROUTER.observe(_isvc(), Arms("nayru-v1", "nayru-v2"))
    assert observed.missing and not observed.rules


def test_both_arms_at_zero_is_refused() -> None:
    with pytest.raises(RoutingError, match="no traffic"):
        ROUTER.patch_weights(ROUTER.observe(_isvc(), ARMS), ArmWeights(champion=0, challenger=0))


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        (None, True),
        ({"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True"}]}, True),
        ({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}, False),
        ({"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "False",
                                                   "message": "revision failed"}]}, False),
        ({"components": {"predictor": {"latestCreatedRevision": "nayru-predictor-00002",
                                       "latestReadyRevision": "nayru-predictor-00001"}}}, False),
        ({"components": {"predictor": {"latestCreatedRevision": "nayru-predictor-00002",
                                       "latestReadyRevision": "nayru-predictor-00002"}}}, True),
    ],
    ids=["no-status", "ready", "older-generation", "not-ready", "revision-not-ready",
         "revision-ready"],
)  # fmt: skip
def test_a_write_counts_once_kserve_reconciled_it(status: Any, ready: bool) -> None:
    obj = _isvc()
    if status is not None:
        obj["status"] = status
    observed = ROUTER.observe(obj, ARMS)
    assert observed.accepted is ready and bool(observed.waiting) is not ready


def test_a_challenger_name_kserve_refuses_becomes_a_dns_1035_canary_name() -> None:
    arms = Arms("nayru-v1", "nayru-v2.1", champion_uri=V1, challenger_uri=V2)
    obj = _isvc(raw=True)
    after = _apply(
        obj, ROUTER.patch_weights(ROUTER.observe(obj, arms), ArmWeights(champion=90, challenger=10))
    )
    name = after["spec"]["canary"][0]["predictor"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and name.startswith("nayru-v2-1-")
    assert ROUTER.observe(after, arms).weights == [ArmWeights(champion=90, challenger=10)]


def test_raw_promotion_adopts_the_canary_s_deployment_instead_of_restarting() -> None:
    """KServe's documented promotion: the predictor takes the canary's name (its warm
    Deployment), and the entry goes."""
    after = _step(_isvc(raw=True), 50)
    promoted = _apply(after, ROUTER.promote(ROUTER.observe(after, ARMS)))
    assert promoted["spec"]["predictor"]["name"] == "nayru-v2"
    assert promoted["spec"]["predictor"]["model"]["storageUri"] == V2
    assert "canary" not in promoted["spec"]
