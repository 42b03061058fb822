"""KServe ``InferenceService`` (``serving.kserve.io/v1beta1``): the challenger is a model
URI, not a backend that already runs.

KServe stands the challenger up itself once the predictor names its model, so this
router writes the ModelVersion's ``uri`` and the share, never the Knative Service or the
Deployment underneath (KServe overwrites both). Two modes, read from the
``serving.kserve.io/deploymentMode`` annotation (or ``status.deploymentMode``):

- *Serverless* (the default): the predictor's ``storageUri`` becomes the challenger's and
  ``canaryTrafficPercent`` its share; KServe sends the rest to the revision rolled out
  before (the champion). Promotion removes ``canaryTrafficPercent`` (the new revision
  takes all). Rollback puts the champion's ``storageUri`` back with
  ``canaryTrafficPercent: 0``: without the 0, KServe would route everything to the latest
  *ready* revision — the rejected challenger's — until the restored one is ready. The 0
  stays; remove it at the next rollout of your own.
- *RawDeployment* / *Standard* (KServe 0.20 and later): the challenger is an entry of
  ``spec.canary`` named after its serving name, a copy of the predictor's model with the
  challenger's ``storageUri``, carrying ``trafficPercent``. Promotion makes its URI the
  predictor's and drops the entry; rollback drops the entry (and the list, when the test
  created it), which gives back the exact original. An older KServe prunes the unknown
  ``spec.canary`` field: seen after our write, that is ``UnsupportedTarget``, not a
  test that silently never shifts anything.

Wherever the model becomes an arm's, its environment says so (``AFS_MODEL_URI``,
``AFS_MODEL_VERSION`` = the arm's usage name): both arms answer behind one
InferenceService, and this is how each revision's records name their arm. A payload
logger pointed at the collector (a ``logger.url`` ending in ``/v1/kserve``) gets the
arm's usage name as its ``model`` parameter in the same write, so the events of each
revision are recorded under their arm too.

A predictor whose model has no ``storageUri`` (a custom container) cannot be switched by
URI, and ModelMesh has no canary rollout: ``UnsupportedTarget`` as well, nothing written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from afs.continuous.kube.api.v1alpha1 import ArmWeights, RuleWeights
from afs.continuous.kube.naming import dns_1035_label
from afs.continuous.kube.routing.base import (
    Arms,
    JsonPatch,
    Observed,
    Resource,
    RoutingError,
    RuleSlots,
    Slot,
    escape,
    observation,
    ready_at_generation,
    set_slot,
    unset_slot,
)
from afs.continuous.kube.serving import MODEL_URI_ENV, MODEL_VERSION_ENV

MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
_RAW_MODES = frozenset({"RawDeployment", "Standard"})

#: the framework keys of the older predictor shape (``predictor.sklearn.storageUri``)
_FRAMEWORKS = (
    "model", "sklearn", "xgboost", "lightgbm", "tensorflow", "pytorch", "triton", "onnx",
    "pmml", "paddle", "huggingface",
)  # fmt: skip


@dataclass(frozen=True)
class KServeObserved(Observed):
    """What the writes need beyond the weights: where the model's URI sits, as read."""

    raw: bool = False
    model_path: str = ""
    model: Mapping[str, Any] | None = None
    """The predictor's model block as read (copied into a RawDeployment canary)."""
    uri: str | None = None
    champion_uri: str | None = None
    challenger_uri: str | None = None
    canary_index: int | None = None
    """RawDeployment: our entry's index in ``spec.canary`` (None: not there)."""
    canary_count: int | None = None
    """RawDeployment: how many entries ``spec.canary`` has (None: no list)."""
    canary_name: str = ""
    champion_usage: str | None = None
    challenger_usage: str | None = None
    logger: Mapping[str, Any] | None = None
    """The predictor's payload logger, when it sends to the collector."""

    def original(self) -> list[RuleWeights]:
        """Serverless: ``canaryTrafficPercent`` as read; RawDeployment: nothing to keep
        (the original is the object without our canary entry)."""
        if self.raw or not self.rules:
            return []
        return [RuleWeights(rule=0, champion=None, challenger=self.rules[0].challenger.weight)]


class KServeRouter:
    resource = Resource("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService")

    def observe(self, obj: Mapping[str, Any] | None, arms: Arms) -> Observed:
        if obj is None:
            return Observed(found=False)
        spec = obj.get("spec") or {}
        predictor = spec.get("predictor") or {}
        framework = next((key for key in _FRAMEWORKS if isinstance(predictor.get(key), dict)), "")
        model = predictor.get(framework) if framework else None
        base = observation(obj, [], ())
        accepted, waiting = ready_at_generation(obj, what="the InferenceService")
        if accepted:
            accepted, waiting = _revisions_ready(obj)
        o = KServeObserved(
            found=True, annotations=base.annotations, managed_fields=base.managed_fields,
            resource_version=base.resource_version,
            accepted=accepted, waiting=waiting, champion_uri=arms.champion_uri,
            challenger_uri=arms.challenger_uri, canary_name=dns_1035_label(arms.challenger),
            champion_usage=arms.champion_usage, challenger_usage=arms.challenger_usage,
        )  # fmt: skip
        if _mode(obj) == "ModelMesh":
            return replace(o, unsupported="ModelMesh InferenceServices have no canary rollout")
        if model is None or not isinstance(model.get("storageUri"), str):
            return replace(
                o, unsupported="spec.predictor has no model with a storageUri (a custom "
                "container cannot be switched by URI)",
            )  # fmt: skip
        if arms.champion_uri is None or arms.challenger_uri is None:  # a ModelVersion is gone
            return replace(o, missing=("the ModelVersions' uri",))
        logger = predictor.get("logger")
        o = replace(
            o, raw=_mode(obj) in _RAW_MODES, model_path=f"/spec/predictor/{escape(framework)}",
            model=dict(model), uri=model["storageUri"],
            logger=logger if _logs_to_collector(logger) else None,
        )  # fmt: skip
        return _raw(o, spec) if o.raw else _serverless(o, predictor)

    def patch_weights(self, observed: Observed, weights: ArmWeights) -> JsonPatch:
        o = _ours(observed)
        total = weights.champion + weights.challenger
        if total <= 0:
            raise RoutingError("both arms at weight 0 would leave the InferenceService no traffic")
        percent = round(100 * weights.challenger / total)
        if o.raw:
            return _set_canary(o, percent)
        # the share first: its test reads the storageUri as it is before the switch
        return [*set_slot(o.rules[0].challenger, percent), *_switch(o, challenger=True)]

    def restore(self, observed: Observed, original: Sequence[RuleWeights]) -> JsonPatch:
        o = _ours(observed)
        if not o.rules:  # the model is no arm's any more: nothing of ours to take back
            return []
        if o.raw:
            return _drop_canary(o)
        return [*set_slot(o.rules[0].challenger, 0), *_switch(o, challenger=False)]

    def promote(self, observed: Observed) -> JsonPatch:
        o = _ours(observed)
        if not o.rules:
            return []
        if o.raw:  # the canary's Deployment becomes the predictor's: no restart
            adopt: JsonPatch = (
                [{"op": "add", "path": "/spec/predictor/name", "value": o.canary_name}]
                if o.canary_index is not None else []
            )  # fmt: skip
            return [*_drop_canary(o), *adopt, *_switch(o, challenger=True)]
        slot = o.rules[0].challenger
        unset = [] if slot.weight is None else unset_slot(slot)
        return [*unset, *_switch(o, challenger=True)]


def _ours(observed: Observed) -> KServeObserved:
    if not isinstance(observed, KServeObserved):
        raise TypeError("the kserve router writes only what it observed itself")
    return observed


def _revisions_ready(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """Serverless: the predictor's latest revision (the one a write made) is ready, as
    ``status.components.predictor`` reports it; the champion's is the one rolled out
    before. Nothing reported: nothing to wait for."""
    predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
    created, ready = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
    if created and created != ready:
        return False, f"KServe's revision {created} is not ready yet (ready: {ready or 'none'})"
    return True, ""


def _mode(obj: Mapping[str, Any]) -> str:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    mode = annotations.get(MODE_ANNOTATION) or (obj.get("status") or {}).get("deploymentMode")
    return str(mode or "Serverless")


_CANARY_PERCENT = "/spec/predictor/canaryTrafficPercent"


def _serverless(o: KServeObserved, predictor: Mapping[str, Any]) -> Observed:
    canary = predictor.get("canaryTrafficPercent")
    percent = canary if isinstance(canary, int) and not isinstance(canary, bool) else None
    if o.uri == o.challenger_uri:
        challenger = 100 if percent is None else percent  # unset: the latest revision has all
    elif o.uri == o.champion_uri:
        challenger = 0
    else:
        return replace(o, missing=(f"either arm's uri (storageUri is {o.uri!r})",))
    anchor = (f"{o.model_path}/storageUri", o.uri)
    rule = RuleSlots(
        rule=0,
        champion=Slot(path=anchor[0], anchor=anchor, weight=100 - challenger, default=100),
        challenger=Slot(path=_CANARY_PERCENT, anchor=anchor, weight=percent, default=challenger),
    )
    return replace(o, rules=(rule,))


def _raw(o: KServeObserved, spec: Mapping[str, Any]) -> Observed:
    canaries = spec.get("canary")
    entries = canaries if isinstance(canaries, list) else None
    index = next(
        (
            i for i, entry in enumerate(entries or [])
            if isinstance(entry, dict)
            and ((entry.get("predictor") or {}).get("name")) == o.canary_name
        ),
        None,
    )  # fmt: skip
    o = replace(o, canary_index=index, canary_count=None if entries is None else len(entries))
    if index is not None:
        percent = (entries or [])[index].get("trafficPercent")
        challenger = percent if isinstance(percent, int) and not isinstance(percent, bool) else 0
    elif o.uri == o.challenger_uri:
        challenger = 100  # promoted: the predictor serves the challenger
    else:
        record = o.record or {}
        if record.get("phase") in ("Running", "WaitingPromotion") and entries is None:
            return replace(
                o, unsupported="spec.canary was dropped by the API server after this test "
                "wrote it: RawDeployment canaries need KServe 0.20 or later",
            )  # fmt: skip
        challenger = 0
    if o.uri not in (o.champion_uri, o.challenger_uri):
        return replace(o, missing=(f"either arm's uri (storageUri is {o.uri!r})",))
    anchor = (f"{o.model_path}/storageUri", o.uri)
    path = f"/spec/canary/{index}/trafficPercent" if index is not None else "/spec/canary"
    rule = RuleSlots(
        rule=0,
        champion=Slot(path=anchor[0], anchor=anchor, weight=100 - challenger, default=100),
        challenger=Slot(path=path, anchor=anchor, weight=challenger, default=0),
    )
    return replace(o, rules=(rule,))


def _switch(o: KServeObserved, *, challenger: bool) -> JsonPatch:
    """The predictor's model becomes one arm's: its ``storageUri``, and in its environment
    where it is and what its usage is logged under (``AFS_MODEL_URI``,
    ``AFS_MODEL_VERSION``), so each revision's records name their arm."""
    uri = o.challenger_uri if challenger else o.champion_uri
    if uri is None or o.uri == uri:
        return []
    path = f"{o.model_path}/storageUri"
    usage = o.challenger_usage if challenger else o.champion_usage
    ops: JsonPatch = [
        {"op": "test", "path": path, "value": o.uri},
        {"op": "replace", "path": path, "value": uri},
        {"op": "add", "path": f"{o.model_path}/env",
         "value": _arm_env((o.model or {}).get("env"), uri, usage)},
    ]  # fmt: skip
    if o.logger is not None and usage is not None:
        ops.append(
            {"op": "replace", "path": "/spec/predictor/logger/url",
             "value": url_naming_arm(o.logger["url"], usage)}
        )  # fmt: skip
    return ops


COLLECTOR_PATH = "/v1/kserve"


def _logs_to_collector(logger: Any) -> TypeGuard[Mapping[str, Any]]:
    """A payload logger whose URL is the collector's KServe endpoint (another sink, such
    as a message dumper, is left as it is)."""
    if not isinstance(logger, dict) or not isinstance(logger.get("url"), str):
        return False
    return urlsplit(logger["url"]).path.rstrip("/").endswith(COLLECTOR_PATH)


def url_naming_arm(url: str, usage: str) -> str:
    """The logger URL with ``model`` set to the arm's usage name, other parameters kept."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "model"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("model", usage)])))


def _arm_env(env: Any, uri: str | None, usage: str | None) -> list[dict[str, Any]]:
    ours = {MODEL_URI_ENV: uri, MODEL_VERSION_ENV: usage}
    kept = [e for e in env or [] if isinstance(e, dict) and e.get("name") not in ours]
    return [*kept, *({"name": k, "value": v} for k, v in ours.items() if v is not None)]


def _set_canary(o: KServeObserved, percent: int) -> JsonPatch:
    if o.canary_index is not None:
        base = f"/spec/canary/{o.canary_index}"
        current = o.rules[0].challenger.weight
        anchor = (f"{base}/predictor/name", o.canary_name)
        return set_slot(
            Slot(path=f"{base}/trafficPercent", anchor=anchor, weight=current, default=0), percent
        )
    model: dict[str, Any] = dict(o.model or {})
    if o.model_path.endswith("/model"):  # KServe's CRD requires it; its webhook writes ""
        model.setdefault("name", "")
    predictor: dict[str, Any] = {
        "name": o.canary_name,
        o.model_path.rpartition("/")[2]: {
            **model,
            "storageUri": o.challenger_uri,
            "env": _arm_env((o.model or {}).get("env"), o.challenger_uri, o.challenger_usage),
        },
    }
    if o.logger is not None and o.challenger_usage is not None:
        predictor["logger"] = {
            **o.logger,
            "url": url_naming_arm(o.logger["url"], o.challenger_usage),
        }
    entry = {"trafficPercent": percent, "predictor": predictor}
    tests: JsonPatch = [{"op": "test", "path": f"{o.model_path}/storageUri", "value": o.uri}]
    if o.canary_count is None:
        return [*tests, {"op": "add", "path": "/spec/canary", "value": [entry]}]
    return [*tests, {"op": "add", "path": "/spec/canary/-", "value": entry}]


def _drop_canary(o: KServeObserved) -> JsonPatch:
    if o.canary_index is None:
        return []
    base = f"/spec/canary/{o.canary_index}"
    ops: JsonPatch = [{"op": "test", "path": f"{base}/predictor/name", "value": o.canary_name}]
    if o.canary_count == 1:  # ours alone: the list goes too (no list and [] mean the same)
        return [*ops, {"op": "remove", "path": "/spec/canary"}]
    return [*ops, {"op": "remove", "path": base}]
