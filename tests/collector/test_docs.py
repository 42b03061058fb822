"""docs/collector.md: its examples are sent to a running collector and accepted."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import yaml

from afs.continuous.collector.cli import build_parser
from tests.collector.conftest import AUTH, Serve
from tests.docs_examples import ROOT, code_blocks, section

DOC = ROOT / "docs" / "collector.md"


async def test_the_native_examples_are_accepted(serve: Serve) -> None:
    native = section(DOC, "Native API")
    record, feedback = code_blocks(native, "json")
    (lines,) = code_blocks(native, "ndjson")
    async with serve() as (client, collector):
        one = await client.post(
            "/v1/usage", data=record, headers={"Content-Type": "application/json", **AUTH}
        )
        assert one.status == 200
        (record_id,) = (await one.json())["ids"]
        many = await client.post(
            "/v1/usage", data=lines, headers={"Content-Type": "application/x-ndjson", **AUTH}
        )
        assert many.status == 200 and len((await many.json())["ids"]) == 2
        answer = await client.post(
            "/v1/feedback", data=feedback.replace("RECORD_ID", record_id),
            headers={"Content-Type": "application/json", **AUTH},
        )  # fmt: skip
        assert (await answer.json()) == {"updated": 1, "missing": []}
        assert collector.logger.store.get(record_id).user_feedback == 1  # type: ignore[union-attr]


async def test_the_openai_example_is_accepted_under_its_arm(serve: Serve) -> None:
    (pair,) = code_blocks(section(DOC, "OpenAI-style pairs"), "json")
    async with serve() as (client, collector):
        answer = await client.post(
            "/v1/openai", data=pair, headers={"Content-Type": "application/json", **AUTH}
        )
        assert answer.status == 200
        (record_id,) = (await answer.json())["ids"]
        record = collector.logger.store.get(record_id)
    assert record is not None and record.model == json.loads(pair)["model"]


def test_the_kserve_stanza_points_at_the_kserve_endpoint_with_an_arm() -> None:
    (manifest,) = code_blocks(section(DOC, "KServe's payload logger"), "yaml")
    logger = yaml.safe_load(manifest)["spec"]["predictor"]["logger"]
    url = urlsplit(logger["url"])
    assert (url.path, logger["mode"]) == ("/v1/kserve", "all")
    assert parse_qs(url.query)["model"] == ["nayru-run-2"]


def test_every_option_the_doc_names_exists() -> None:
    help_text = build_parser().format_help()
    named = set(re.findall(r"`(--[a-z-]+)", DOC.read_text(encoding="utf-8")))
    assert named and all(option in help_text for option in named), named


def test_the_docs_chart_values_serve_the_logger_url_the_doc_gives() -> None:
    """A release named ``afs-continuous`` in ``afs-system`` (as the doc says) serves the
    KServe port at the host and port of the doc's logger stanza."""
    import helm_python as helm

    from tests.kube.test_chart import CHART

    (values,) = code_blocks(DOC.read_text(encoding="utf-8").split("## Endpoints")[0], "yaml")
    rendered = helm.Chart.load(CHART).render(
        yaml.safe_load(values), name="afs-continuous", namespace="afs-system"
    )
    documents = [
        d for path, text in rendered.items() if path.endswith(".yaml")
        for d in yaml.safe_load_all(text) if d
    ]  # fmt: skip
    (service,) = [
        d for d in documents
        if d["kind"] == "Service" and d["metadata"]["name"].endswith("-collector")
    ]  # fmt: skip
    (manifest,) = code_blocks(section(DOC, "KServe's payload logger"), "yaml")
    url = urlsplit(yaml.safe_load(manifest)["spec"]["predictor"]["logger"]["url"])
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert url.hostname == f"{name}.{namespace}"
    assert url.port in {p["port"] for p in service["spec"]["ports"] if p["name"] == "kserve"}


def test_ndjson_is_sent_whole_and_the_local_command_binds_loopback() -> None:
    text = DOC.read_text(encoding="utf-8")
    ndjson_posts = [line for line in text.splitlines() if ("x-ndjson" in line and "curl" in line)
                    or "@records.ndjson" in line]  # fmt: skip
    assert ndjson_posts and all("--data-binary" in line for line in ndjson_posts)
    first = code_blocks(text, "bash")[0]
    assert "--host 127.0.0.1" in first
