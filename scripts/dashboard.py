"""The Grafana dashboard, built from code with grafana-foundation-sdk (never hand-edited).

``scripts/render_manifests.py`` writes it to ``dashboards/afs-continuous.json`` and the
chart's copy; every panel's query is run against a real Prometheus scraping the operator
and the collector by ``tests/test_dashboard.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from grafana_foundation_sdk.builders.common import VizLegendOptions, VizTooltipOptions
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef

UID = "afs-continuous"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"


ARM = "{{namespace}}/{{name}} {{arm}}"
ROWS: dict[str, tuple[PanelSpec, ...]] = {
    "Learning loops": (
        PanelSpec("Loops by phase", "How many LearningLoops are in each phase.",
                  (Query("sum by (phase) (afs_loop_phase)", "{{phase}}"),)),
        PanelSpec("Trigger checks", "Checks per second, per loop.",
                  (Query("sum by (namespace, loop) (rate(afs_loop_checks_total[5m]))",
                         "{{namespace}}/{{loop}}"),), "ops"),
        PanelSpec("Triggers fired", "Triggers that fired in the last hour, by type.",
                  (Query("sum by (type) (increase(afs_loop_triggers_fired_total[1h]))",
                         "{{type}}"),)),
        PanelSpec("Training runs", "Runs started, succeeded and failed in the last hour.",
                  (Query("sum by (outcome) (increase(afs_loop_runs_total[1h]))",
                         "{{outcome}}"),)),
        PanelSpec("Failed runs in a row", "Per loop, since its last successful run.",
                  (Query("afs_loop_failed_runs_in_a_row", "{{namespace}}/{{loop}}"),)),
        PanelSpec("Unreachable databases", "1 while a resource cannot reach its database.",
                  (Query("afs_database_unavailable", "{{kind}} {{namespace}}/{{name}}"),)),
    ),
    "A/B tests": (
        PanelSpec("A/B tests by phase", "How many ABTests are in each phase.",
                  (Query("sum by (phase) (afs_abtest_phase)", "{{phase}}"),)),
        PanelSpec("Weights", "The weight each test last wrote, per arm (percent).",
                  (Query("afs_abtest_weight", ARM),), "percent"),
        PanelSpec("Verdicts", "Tests ended in the last day, by verdict.",
                  (Query("sum by (verdict) (increase(afs_abtest_decisions_total[1d]))",
                         "{{verdict}}"),)),
        PanelSpec("Time to decision", "Median time from a test's first step to its verdict.",
                  (Query("histogram_quantile(0.5, sum by (le) "
                         "(rate(afs_abtest_duration_seconds_bucket[7d])))", "median"),), "s"),
        PanelSpec("Quality per arm", "Mean quality score of each arm's scored records.",
                  (Query("afs_abtest_arm_quality", ARM),)),
        PanelSpec("Latency per arm", "Geometric mean latency of each arm's records.",
                  (Query("afs_abtest_arm_latency_ms", ARM),), "ms"),
        PanelSpec("Error rate per arm", "Share of each arm's records that are errors.",
                  (Query("afs_abtest_arm_error_rate", ARM),), "percentunit"),
        PanelSpec("Requests per arm", "Records of each arm in the test's epochs so far.",
                  (Query("afs_abtest_arm_requests", ARM),)),
    ),
    "Operator": (
        PanelSpec("Reconcile time (p99)", "99th percentile of one reconciliation.",
                  (Query("histogram_quantile(0.99, sum by (le) "
                         "(rate(afs_loop_reconcile_seconds_bucket[5m])))", "LearningLoop"),
                   Query("histogram_quantile(0.99, sum by (le) "
                         "(rate(afs_abtest_reconcile_seconds_bucket[5m])))", "ABTest")), "s"),
    ),
    "Collector": (
        PanelSpec("Records received and stored", "Per second, by endpoint.",
                  (Query("sum by (endpoint) (rate(afs_collector_records_received_total[5m]))",
                         "received {{endpoint}}"),
                   Query("sum by (endpoint) (rate(afs_collector_records_stored_total[5m]))",
                         "stored {{endpoint}}")), "ops"),
        PanelSpec("Refused", "Refused requests per second, by endpoint and reason.",
                  (Query("sum by (endpoint, reason) "
                         "(rate(afs_collector_records_rejected_total[5m]))",
                         "{{endpoint}} {{reason}}"),), "ops"),
        PanelSpec("Request time (p99)", "99th percentile of answering a request, by endpoint.",
                  (Query("histogram_quantile(0.99, sum by (le, endpoint) "
                         "(rate(afs_collector_request_seconds_bucket[5m])))",
                         "{{endpoint}}"),), "s"),
        PanelSpec("Waiting", "KServe halves waiting for their pair, records queued with "
                  "async=1, and halves that expired in the last hour.",
                  (Query("sum(afs_collector_join_pending)", "KServe halves"),
                   Query("sum(afs_collector_buffer_pending)", "async queue"),
                   Query("sum(increase(afs_collector_join_expired_total[1h]))",
                         "expired halves")),),
    ),
}  # fmt: skip


def build() -> Dashboard:
    dashboard = (
        Dashboard("afs-continuous")
        .uid(UID)
        .tags(["afs-continuous", "generated"])
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    legend = (
        VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST)
        .placement(LegendPlacement.BOTTOM).calcs([])
    )  # fmt: skip
    tooltip = VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
    number = 0
    for row, panels in ROWS.items():
        number += 1
        dashboard = dashboard.with_row(Row(row).id(number))
        for spec in panels:
            number += 1
            panel = (
                Timeseries().id(number).title(spec.title).description(spec.description)
                .unit(spec.unit).datasource(DATASOURCE).height(8).span(12)
                .legend(legend).tooltip(tooltip)
            )  # fmt: skip
            for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
                panel = panel.with_target(
                    Dataquery().ref_id(ref).expr(query.expr).legend_format(query.legend)
                    .datasource(DATASOURCE)
                )  # fmt: skip
            dashboard = dashboard.with_panel(panel)
    return dashboard


def render() -> str:
    """The dashboard's JSON, stable from run to run (keys sorted)."""
    model = json.loads(JSONEncoder(sort_keys=True).encode(build().build()))
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
