"""Alert rules, Alertmanager routing and the dashboard, checked by the real tools."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agbento import metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC_NAME = re.compile(r"\b(agbento_[a-z_]+)")


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run `make test-deps`"
    return path


def run(*command: str, cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_alert_rules_check_and_pass_their_tests() -> None:
    out = run(tool("promtool"), "check", "rules", "alerts.yml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS" in out
    out = run(tool("promtool"), "test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS" in out


def test_every_alert_has_a_test() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]
              if t.get("exp_alerts")}
    assert alerts == tested


def test_alertmanager_config_and_routing() -> None:
    amtool = tool("amtool")
    config = DEPLOY / "alertmanager" / "alertmanager.yml"
    assert "SUCCESS" in run(amtool, "check-config", str(config), cwd=DEPLOY)
    route = run(amtool, "config", "routes", "test", f"--config.file={config}",
                "severity=page", cwd=DEPLOY)
    assert route.split() == ["on-call-slack,ml-team-email"]
    route = run(amtool, "config", "routes", "test", f"--config.file={config}",
                "severity=ticket", cwd=DEPLOY)
    assert route.split() == ["ml-team-email"]
    text = config.read_text()
    assert "hooks.slack.com" not in text and "password:" not in text  # secrets live in files


def exported_names() -> set[str]:
    from prometheus_client.metrics import MetricWrapperBase

    return {family.name for value in vars(metrics).values()
            if isinstance(value, MetricWrapperBase) for family in value.describe()}


@pytest.mark.parametrize("path", ["prometheus/alerts.yml", "grafana/agbento-dashboard.json"])
def test_dashboards_and_alerts_use_metrics_we_export(path: str) -> None:
    text = (DEPLOY / path).read_text()
    if path.endswith(".json"):
        json.loads(text)
    used = {re.sub(r"_(total|bucket|sum|count)$", "", m) for m in METRIC_NAME.findall(text)}
    assert used and used <= exported_names(), used - exported_names()
