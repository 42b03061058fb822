"""The chart's Prometheus alerts, checked by Prometheus' own promtool: the rules load, and
each alert fires when it should and not before (``promtool test rules``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.test_chart import _one, _render

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (apt-get install prometheus): the alert rules are "
    "not checked by Prometheus",
)

ML = {"namespace": "ml"}


def _rules(tmp_path: Path, values: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    rule = _one(_render({"alerts": {"enabled": True, **(values or {})}}), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    by_name = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    return path, by_name


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)


def test_promtool_loads_every_rule(tmp_path: Path) -> None:
    path, rules = _rules(tmp_path)
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def _annotations(rule: dict[str, Any], labels: dict[str, str], value: str) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them for these labels and value."""

    def render(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        return text.replace("{{ $value }}", value)

    return {key: render(text) for key, text in rule["annotations"].items()}


# alert: (input series, [(eval time, fires?)], the alert's labels, $value)
CASES: dict[str, tuple[list[dict[str, str]], list[tuple[str, bool]], dict[str, str], str]] = {
    "AfsLoopRunsFailing": (
        [{"series": 'afs_loop_failed_runs_in_a_row{namespace="ml",loop="nayru"}',
          "values": "1 2 3 3 0"}],
        [("1m", False), ("2m", True), ("4m", False)],
        {**ML, "loop": "nayru", "severity": "warning"}, "3",
    ),
    "AfsDatabaseUnavailable": (
        [{"series": 'afs_database_unavailable{namespace="ml",kind="ABTest",name="nayru-v2"}',
          "values": "0 1x20"}],
        [("5m", False), ("10m", False), ("12m", True)],
        {**ML, "kind": "ABTest", "name": "nayru-v2", "severity": "critical"}, "1",
    ),
    "AfsABTestHalted": (
        [{"series": 'afs_abtest_phase{namespace="ml",name="nayru-v2",phase="Halted"}',
          "values": "0 0 1 1"}],
        [("1m", False), ("3m", True)],
        {**ML, "name": "nayru-v2", "phase": "Halted", "severity": "warning"}, "1",
    ),
    "AfsABTestRolledBack": (
        [{"series": 'afs_abtest_phase{namespace="ml",name="nayru-v2",phase="RolledBack"}',
          "values": "0x60 1x150"}],
        [("30m", False), ("70m", True), ("150m", False)],
        {**ML, "name": "nayru-v2", "phase": "RolledBack", "severity": "info"}, "1",
    ),
    "AfsABTestAwaitingApproval": (
        [{"series": 'afs_abtest_phase{namespace="ml",name="nayru-v2",phase="WaitingPromotion"}',
          "values": "1x1500"}],
        [("23h", False), ("24h5m", True)],
        {**ML, "name": "nayru-v2", "phase": "WaitingPromotion", "severity": "warning"}, "1",
    ),
    "AfsOperatorDown": (
        [{"series": 'up{job="afs-afs-continuous-metrics"}', "values": "1 1 0x10"}],
        [("1m", False), ("5m", False), ("8m", True)],
        {"severity": "critical"}, "1",
    ),
}  # fmt: skip


@pytest.mark.parametrize("alert", sorted(CASES))
def test_the_alert_fires_when_it_should_and_not_before(tmp_path: Path, alert: str) -> None:
    path, rules = _rules(tmp_path)
    series, evaluations, labels, value = CASES[alert]
    rule = rules[alert]
    tests = {
        "rule_files": [path.name],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": at, "alertname": alert, "exp_alerts": [
                    {"exp_labels": labels, "exp_annotations": _annotations(rule, labels, value)}
                ] if fires else []}
                for at, fires in evaluations
            ],
        }],
    }  # fmt: skip
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", str(tmp_path / "tests.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
