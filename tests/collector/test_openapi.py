"""docs/collector-openapi.yaml describes the service that runs: a valid OpenAPI document,
the same routes, the record's fields, and the answers the service really gives."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

from afs.continuous import UsageLogger
from afs.continuous.collector import Collector
from afs.continuous.records import RECORD_FIELDS
from tests.collector.conftest import AUTH, Serve
from tests.docs_examples import ROOT, code_blocks, section

SPEC: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "collector-openapi.yaml").read_text())
DOC = ROOT / "docs" / "collector.md"


def _schema(name: str) -> dict[str, Any]:
    return {**SPEC["components"]["schemas"][name], "components": SPEC["components"]}


def _response_schema(path: str, status: int) -> dict[str, Any]:
    answer = SPEC["paths"][path]["post"]["responses"][str(status)]
    if "$ref" in answer:
        answer = SPEC["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return {**answer["content"]["application/json"]["schema"], "components": SPEC["components"]}


def _check(instance: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema).validate(instance)


def test_the_document_is_valid_openapi() -> None:
    validate(SPEC)


def test_the_document_has_exactly_the_services_routes(logger: UsageLogger) -> None:
    app = Collector(logger).app()
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(method, path) for path, item in SPEC["paths"].items() for method in item}
    assert documented == served


def test_the_record_schema_has_the_records_fields() -> None:
    fields = set(SPEC["components"]["schemas"]["Record"]["properties"])
    assert fields == {*RECORD_FIELDS, "messages", "tools", "context", "created_at",
                      "assignment_key"}  # fmt: skip


@pytest.mark.parametrize(
    ("heading", "schema"),
    [("Native API", "Record"), ("OpenAI-style pairs", "OpenAIPair")],
)
def test_the_docs_examples_fit_the_schemas(heading: str, schema: str) -> None:
    first = code_blocks(section(DOC, heading), "json")[0]
    _check(json.loads(first), _schema(schema))


async def test_the_services_answers_fit_the_documented_responses(serve: Serve) -> None:
    record = {"query": "q", "response": "r", "model": "m"}
    async with serve() as (client, _):
        for path, body, status in [
            ("/v1/usage", record, 200),
            ("/v1/usage?async=1", record, 202),
            ("/v1/usage", {**record, "quality_score": 3}, 400),
            ("/v1/openai", {"request": {"prompt": "p"}}, 400),
        ]:
            answer = await client.post(path, json=body, headers=AUTH)
            assert answer.status == status
            _check(await answer.json(), _response_schema(path.split("?")[0], status))
        unauthorized = await client.post("/v1/usage", json=record)
        _check(await unauthorized.json(), _response_schema("/v1/usage", 401))
