"""The route table: one place says what every path needs, and it covers every route."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agbento.http.routes import ROUTES, Permission, endpoint_label, route_for

SERVICE = Path(__file__).resolve().parent.parent / "service.py"


@pytest.mark.parametrize(("path", "permission"), [
    ("/predict", Permission.PREDICT),
    ("/predict_proba", Permission.PREDICT),
    ("/feedback", Permission.FEEDBACK),
    ("/admin/model/reload", Permission.ADMIN),
    ("/explain", Permission.EXPLAIN),
    ("/model/info", Permission.MODEL_INFO),
    ("/admin/cache/clear", Permission.ADMIN),
    ("/admin/anything/new", Permission.ADMIN),
    ("/livez", None), ("/readyz", None), ("/health", None), ("/docs.json", None),
    ("/static/swagger.css", None),
    ("/not/in/the/table", Permission.MODEL_INFO),  # closed by default
])
def test_each_path_needs_its_permission(path: str, permission: Permission | None) -> None:
    assert route_for(path).needs(metrics_auth=False) == permission


def test_metrics_is_open_unless_asked_to_need_admin() -> None:
    assert route_for("/metrics").needs(metrics_auth=False) is None
    assert route_for("/metrics").needs(metrics_auth=True) == Permission.ADMIN


def test_only_prediction_routes_are_read_by_the_intake_and_bounded_in_flight() -> None:
    answering = {"/predict", "/predict_proba", "/explain", "/feedback"}
    assert {p for p, r in ROUTES.items() if r.prediction} == answering
    assert {p for p, r in ROUTES.items() if r.guarded} == answering
    assert {p for p, r in ROUTES.items() if r.explanation} == {"/explain"}
    assert not route_for("/livez").logged and not route_for("/metrics").logged
    assert route_for("/predict").logged and route_for("/unknown").logged


def test_endpoint_labels_are_a_bounded_set() -> None:
    assert endpoint_label("/predict") == "/predict"
    assert endpoint_label("/explain") == "/explain"
    assert endpoint_label("/v1/models/anything:explain") == "/v1/explain"
    assert endpoint_label("/x" * 50) == endpoint_label("/admin/secret") == "other"


def test_every_route_the_service_declares_is_in_the_table() -> None:
    source = SERVICE.read_text()
    declared = set(re.findall(r'route="(/[^"]*)"', source))
    declared |= set(re.findall(r'Route\("(/[^"]*)"', source))
    assert declared and declared <= set(ROUTES), declared - set(ROUTES)
