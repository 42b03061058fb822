"""Every object a router writes, checked as the provider's API server would check it: the
provider's own published CRD (``tests/fixtures/provider-crds``, provenance in its README)
— its ``openAPIV3Schema``, the fields pruning would drop, list-type uniqueness and the CEL
rules (``x-kubernetes-validations``, evaluated with cel-python) — and the rules the
providers' admission webhooks add on top (documented, not in the CRDs)."""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import celpy
import jsonpatch
import jsonschema
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from tests.docs_examples import ROOT
from tests.kube.structural import pruned_fields

FIXTURES = ROOT / "tests" / "fixtures" / "provider-crds"
#: (apiVersion, kind) → the fixture holding that version's CRD
CRDS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes.gateway-api-v1.6.1.json",
    ("networking.istio.io/v1", "VirtualService"): "virtualservices.istio-1.30.3.json",
    ("split.smi-spec.io/v1alpha2", "TrafficSplit"): "trafficsplits.linkerd-smi-v0.2.7.json",
    ("split.smi-spec.io/v1alpha4", "TrafficSplit"): "trafficsplits.smi-sdk-go-a143f8b.json",
    ("serving.knative.dev/v1", "Service"): "services.knative-serving-v1.23.0.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservices.kserve-v0.20.0.json",
}  # fmt: skip


@functools.cache
def crd(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def schema_for(obj: dict[str, Any]) -> dict[str, Any]:
    name = CRDS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if name is None:
        raise KeyError(f"no provider CRD for {obj.get('apiVersion')} {obj.get('kind')}")
    [version] = crd(name)["spec"]["versions"]
    assert version["served"], f"{name}: {version['name']} is not served"
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def problems(obj: dict[str, Any]) -> list[str]:
    """Everything the provider's API server (and its webhook) would refuse or drop."""
    schema = schema_for(obj)
    found = [f"{path}: unknown field (pruned)" for path in pruned_fields(obj, schema)]
    stored = with_defaults(obj, schema)  # the API server defaults before it validates
    found += [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in _validator(json.dumps(schema, sort_keys=True)).iter_errors(stored)
    ]
    found += list(_kubernetes_rules(stored, schema, ""))
    webhook = WEBHOOKS.get(obj["kind"])
    if webhook is not None:
        found += webhook(obj)
    return found


def with_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` with the schema's ``default``s filled in where a field is absent."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        out = {key: copy.deepcopy(sub["default"]) for key, sub in properties.items()
               if "default" in sub and key not in value}  # fmt: skip
        for key, child in value.items():
            sub = properties.get(key)
            out[key] = with_defaults(child, sub) if sub is not None else child
        return {**out, **{k: with_defaults(out[k], properties[k]) for k in out
                          if k not in value and k in properties}}  # fmt: skip
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [with_defaults(item, schema["items"]) for item in value]
    return value


@functools.cache
def _validator(schema_text: str) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(_as_json_schema(json.loads(schema_text)))


def _as_json_schema(node: Any) -> Any:
    """OpenAPI v3 as the API server reads it, for jsonschema's Draft 4: ``nullable`` as a
    type list, ``x-kubernetes-int-or-string`` as integer or string."""
    if isinstance(node, list):
        return [_as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _kubernetes_rules(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """The ``x-kubernetes-*`` rules: list uniqueness and CEL, at every level of ``value``."""
    if value is None:
        return
    yield from _list_type(value, schema, path)
    for rule in schema.get("x-kubernetes-validations") or []:
        if "oldSelf" in rule["rule"]:
            continue  # a transition rule: there is no old object when we check one
        if not _holds(rule["rule"], value):
            yield f"{path or '<root>'}: {rule.get('message') or rule['rule']}"
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            sub = properties.get(key) or (additional if isinstance(additional, dict) else None)
            if sub is not None:
                yield from _kubernetes_rules(child, sub, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _kubernetes_rules(item, schema["items"], f"{path}[{index}]")


def _list_type(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    if not isinstance(value, list):
        return
    kind = schema.get("x-kubernetes-list-type")
    if kind == "set" and len({json.dumps(v, sort_keys=True) for v in value}) < len(value):
        yield f"{path}: duplicate entries in a set list"
    if kind == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen = [tuple(json.dumps(item.get(k)) for k in keys) for item in value]
        if len(set(seen)) < len(seen):
            yield f"{path}: duplicate entries for the map keys {keys}"


_CEL = celpy.Environment()


@functools.cache
def _program(rule: str) -> Any:
    return _CEL.program(_CEL.compile(rule))


def _holds(rule: str, value: Any) -> bool:
    result = _program(rule).evaluate({"self": json_to_cel(value)})
    if isinstance(result, CELEvalError):
        raise AssertionError(f"CEL rule could not be evaluated: {rule!r}: {result}")
    return bool(result)


# --- the providers' webhooks -------------------------------------------------------------

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _int(value: Any, default: int = 0) -> int:
    """A weight as a webhook sums it (a wrong type is the schema's to report)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _istio(obj: dict[str, Any]) -> list[str]:
    """Istio's validation webhook: weights 0–100, and a route of several destinations
    must send somewhere (total weight > 0)."""
    found = []
    for i, http in enumerate((obj.get("spec") or {}).get("http") or []):
        route = http.get("route") or []
        weights = [_int(entry.get("weight")) for entry in route]
        if any(not 0 <= w <= 100 for w in weights):
            found.append(f"spec.http[{i}]: a weight outside 0..100")
        if len(route) > 1 and sum(weights) <= 0:
            found.append(f"spec.http[{i}]: total destination weight must be > 0")
    return found


def _knative(obj: dict[str, Any]) -> list[str]:
    """Knative's webhook: percents sum to 100, tags unique, names DNS-1035 labels."""
    spec = obj.get("spec") or {}
    traffic = spec.get("traffic") or []
    found = []
    if traffic and sum(_int(entry.get("percent")) for entry in traffic) != 100:
        found.append("spec.traffic: percents must sum to 100")
    tags = [entry["tag"] for entry in traffic if entry.get("tag")]
    if len(set(tags)) < len(tags):
        found.append("spec.traffic: a tag used twice")
    names = [((spec.get("template") or {}).get("metadata") or {}).get("name")]
    names += [entry.get("revisionName") for entry in traffic]
    found += [f"{name!r}: not a DNS-1035 label" for name in names if name and not
              _DNS_1035.match(name)]  # fmt: skip
    return found


def _kserve(obj: dict[str, Any]) -> list[str]:
    """KServe's webhook: canary percents 0–100, one canary entry per name."""
    spec = obj.get("spec") or {}
    found = []
    percent = _int((spec.get("predictor") or {}).get("canaryTrafficPercent"))
    if not 0 <= percent <= 100:
        found.append("spec.predictor.canaryTrafficPercent: outside 0..100")
    canaries = spec.get("canary") or []
    if any(not 0 <= _int(c.get("trafficPercent")) <= 100 for c in canaries):
        found.append("spec.canary: a trafficPercent outside 0..100")
    names = [(c.get("predictor") or {}).get("name") for c in canaries]
    if len(set(names)) < len(names):
        found.append("spec.canary: a predictor name used twice")
    return found


def _gateway(obj: dict[str, Any]) -> list[str]:
    """Gateway API: a rule whose backends all weigh 0 sends nothing (500 for every
    request); weights are 0–1,000,000 (the CRD's bounds)."""
    found = []
    for i, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
        refs = rule.get("backendRefs") or []
        if refs and sum(_int(ref.get("weight"), 1) for ref in refs) <= 0:
            found.append(f"spec.rules[{i}]: every backend at weight 0")
    return found


def _smi(obj: dict[str, Any]) -> list[str]:
    backends = (obj.get("spec") or {}).get("backends") or []
    if backends and sum(_int(b.get("weight")) for b in backends) <= 0:
        return ["spec.backends: every backend at weight 0"]
    return []


WEBHOOKS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "VirtualService": _istio,
    "Service": _knative,
    "InferenceService": _kserve,
    "HTTPRoute": _gateway,
    "TrafficSplit": _smi,
}


def apply_checked(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """``ops`` applied as the API server applies a JSON patch (RFC 6902), and the result
    checked as it would be (:func:`problems`): every router test's writes go through it."""
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), ops)
    found = problems(result)
    assert found == [], f"the provider would refuse this write: {found}"
    return result
