"""Alert rules, Alertmanager routing and the dashboard, checked by the real tools."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agbento.monitoring import drift, metrics, quality

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC_NAME = re.compile(r"\b(agbento_[a-z_]+)")
RECORDED_NAME = re.compile(r"\b(agbento:[a-z_0-9:]+)")


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
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", [])
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

    return {family.name for module in (metrics, drift, quality)
            for value in vars(module).values()
            if isinstance(value, MetricWrapperBase) for family in value.describe()}


@pytest.mark.parametrize("path", ["prometheus/alerts.yml", "grafana/agbento-dashboard.json"])
def test_dashboards_and_alerts_use_metrics_we_export(path: str) -> None:
    text = (DEPLOY / path).read_text()
    if path.endswith(".json"):
        json.loads(text)
    used = {re.sub(r"_(total|bucket|sum|count)$", "", m) for m in METRIC_NAME.findall(text)}
    assert used and used <= exported_names(), used - exported_names()


def test_recorded_series_used_are_recorded() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    used = set()
    for path in ("prometheus/alerts.yml", "prometheus/alerts_test.yml",
                 "grafana/agbento-dashboard.json"):
        used |= set(RECORDED_NAME.findall((DEPLOY / path).read_text()))
    assert recorded and used <= recorded, used - recorded


def test_prometheus_config_for_compose() -> None:
    out = run(tool("promtool"), "check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS" in out


def test_compose_references_only_files_that_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["services"]) == {"agbento", "redis", "prometheus", "alertmanager",
                                        "grafana"}
    for name, service in compose["services"].items():
        assert "healthcheck" in service, name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
        for secret in service.get("secrets", []):
            secret_name = secret if isinstance(secret, str) else secret["source"]
            assert secret_name in compose["secrets"], (name, secret_name)
    for secret in compose["secrets"].values():
        path = DEPLOY / secret["file"]
        # real secrets are the operator's; the repository ships a template for each
        assert path.with_name(path.name + ".example").exists(), path
    agbento = compose["services"]["agbento"]
    assert agbento["environment"]["AGBENTO_REQUIRE_API_KEYS"] == "true"
    assert agbento["read_only"] is True


def rendered(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    out = run(kubectl, "kustomize", str(DEPLOY / "k8s" / overlay), cwd=DEPLOY)
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_kubernetes_manifests_validate(overlay: str) -> None:
    import kubernetes_validate

    docs = rendered(overlay)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "ConfigMap", "ServiceMonitor", "PrometheusRule"} <= kinds
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: no upstream schema; checked below
        kubernetes_validate.validate(doc, "1.32", strict=True)
    deployment = next(d for d in docs if d["kind"] == "Deployment"
                      and d["metadata"]["name"] == "agbento")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["terminationGracePeriodSeconds"] > 60 + 5  # request timeout + preStop
    drain = container["args"][container["args"].index("--timeout-graceful-shutdown") + 1]
    assert int(drain) + 5 < pod["terminationGracePeriodSeconds"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/home/bentoml/prometheus_multiproc_dir" in mounts and "/tmp" in mounts
    config = next(d for d in docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"].startswith("agbento-config"))["data"]
    # fused: one API worker (each holding the model) per requested CPU
    assert config["AGBENTO_TOPOLOGY"] == "fused"
    assert int(config["AGBENTO_API_WORKERS"]) == int(container["resources"]["requests"]["cpu"])


def test_prometheus_rule_matches_alerts_file() -> None:
    rule = yaml.safe_load((DEPLOY / "k8s" / "base" / "prometheusrule.yaml").read_text())
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
