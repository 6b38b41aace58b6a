"""The Bento over real HTTP: every endpoint, same answers as the predictor in-process."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bentoml
import httpx
import pandas as pd
import psutil
import pytest
from autogluon.tabular import TabularPredictor

from agbento.core.settings import usable_cpus
from agbento.models.store import ModelCard
from tests.helpers import adaptive_batches, penguin_rows
from tests.servers import BentoServer
from tests.tiny_models import TinyModels

pytestmark = pytest.mark.integration


def in_process(card: ModelCard, rows: list[dict[str, Any]]) -> tuple[list[Any], pd.DataFrame]:
    predictor = TabularPredictor.load(str(card.predictor_path), verbosity=0)
    validated = card.schema.validate_rows(rows)
    assert validated.ok
    frame = card.schema.to_frame(validated.rows)
    predictions = predictor.predict(frame).tolist()
    probabilities = predictor.predict_proba(frame) if card.is_classification else None
    return predictions, probabilities


def post(server: BentoServer, path: str, rows: Any, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json={"data": rows}, headers=headers, timeout=60)


@pytest.mark.parametrize("n", [1, 1000])
def test_multiclass_predictions_match_in_process_in_order(
    multiclass_server: BentoServer, tiny_models: TinyModels, n: int
) -> None:
    card = tiny_models.multiclass
    rows = penguin_rows("species", n, seed=n)
    response = post(multiclass_server, "/predict", rows)
    assert response.status_code == 200, response.text
    body = response.json()
    expected, expected_proba = in_process(card, rows)
    assert body["predictions"] == expected
    assert len(body["probabilities"]) == n
    for got, (_, want) in zip(body["probabilities"], expected_proba.iterrows(), strict=True):
        assert set(got) == {"Adelie", "Chinstrap", "Gentoo"}
        assert math.isclose(sum(got.values()), 1.0, abs_tol=1e-6)
        for cls, p in got.items():
            assert p == pytest.approx(float(want[cls]), abs=1e-6)
    assert body["model"] == {
        "tag": card.tag,
        "problem_type": "multiclass",
        "eval_metric": "accuracy",
    }
    assert body["timestamp"].endswith("Z")


def test_binary_model(binary_server: BentoServer, tiny_models: TinyModels) -> None:
    rows = penguin_rows("sex", 50)
    body = post(binary_server, "/predict", rows).json()
    expected, _ = in_process(tiny_models.binary, rows)
    assert body["predictions"] == expected
    assert set(body["predictions"]) <= {"male", "female"}
    proba = post(binary_server, "/predict_proba", rows).json()
    assert proba["classes"] == ["female", "male"]
    assert all(math.isclose(sum(p.values()), 1.0, abs_tol=1e-6) for p in proba["probabilities"])
    assert proba["probabilities"] == body["probabilities"]


def test_regression_model(regression_server: BentoServer, tiny_models: TinyModels) -> None:
    rows = penguin_rows("body_mass_g", 200)
    body = post(regression_server, "/predict", rows).json()
    expected, _ = in_process(tiny_models.regression, rows)
    assert body["predictions"] == pytest.approx(expected, rel=1e-6)
    assert body["probabilities"] is None
    assert body["model"]["problem_type"] == "regression"


def test_predict_proba_on_regression_is_a_clear_400(regression_server: BentoServer) -> None:
    response = post(regression_server, "/predict_proba", penguin_rows("body_mass_g", 1))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "not_a_classifier"
    assert "/predict" in error["message"]


def test_bad_rows_are_422_naming_row_and_field(multiclass_server: BentoServer) -> None:
    good = penguin_rows("species", 2)
    rows = [good[0], {**good[1], "bill_length_mm": "long"}, {"island": "Biscoe"}]
    response = post(multiclass_server, "/predict", rows, **{"X-Request-ID": "req-42"})
    assert response.status_code == 422
    body = response.json()
    assert body["request_id"] == "req-42"
    assert response.headers["x-request-id"] == "req-42"
    assert body["error"]["code"] == "invalid_rows"
    assert {"row": 1, "field": "bill_length_mm"} in [
        {"row": d["row"], "field": d["field"]} for d in body["error"]["details"]
    ]
    assert {(d["row"], d["field"]) for d in body["error"]["details"]} >= {(2, "year")}


def test_unknown_fields_are_reported_not_fatal(multiclass_server: BentoServer) -> None:
    row = {**penguin_rows("species", 1)[0], "colour": "black"}
    body = post(multiclass_server, "/predict", [row]).json()
    assert body["ignored_fields"] == ["colour"]
    assert len(body["predictions"]) == 1


def test_health_and_bentoml_probes(multiclass_server: BentoServer, tiny_models: TinyModels) -> None:
    health = httpx.get(f"{multiclass_server.url}/health")
    assert health.status_code == 200
    assert health.json() == {
        "status": "healthy",
        "model_loaded": True,
        "model": tiny_models.multiclass.reference(),
        "cache": {"enabled": True, "backend": "memory", "ttl_s": 3600, "timeout_ms": 50,
                  "available": True},
    }
    assert httpx.get(f"{multiclass_server.url}/livez").status_code == 200
    assert httpx.get(f"{multiclass_server.url}/readyz").status_code == 200


def test_model_info(multiclass_server: BentoServer, tiny_models: TinyModels) -> None:
    info = httpx.get(f"{multiclass_server.url}/model/info").json()
    card = tiny_models.multiclass
    assert info["tag"] == card.tag
    assert info["label"] == "species"
    assert info["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert info["holdout_metrics"] == card.metadata["holdout_metrics"]
    assert set(info["feature_importance"]) == set(card.schema.names)
    assert [f["name"] for f in info["schema"]["features"]] == card.schema.names
    assert info["models"] and info["size_bytes"] > 0
    assert info["versions"]["bentoml"] == bentoml.__version__


def test_sync_http_client(multiclass_server: BentoServer, tiny_models: TinyModels) -> None:
    rows = penguin_rows("species", 5)
    with bentoml.SyncHTTPClient(multiclass_server.url) as client:
        body = client.predict(data=rows)
        assert body["predictions"] == in_process(tiny_models.multiclass, rows)[0]
        with pytest.raises(bentoml.exceptions.BentoMLException) as failure:
            client.predict(data=[{"island": "Biscoe"}])
    assert "invalid_rows" in str(failure.value)


def test_concurrent_single_rows_merge_into_fewer_model_calls(
    multiclass_server: BentoServer,
) -> None:
    # rows no other test sends, so the prediction cache cannot answer them
    rows = [{**row, "body_mass_g": 3000.25 + i} for i, row in
            enumerate(penguin_rows("species", 64, seed=7))]
    rows_before, calls_before = adaptive_batches(multiclass_server.url)
    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(lambda r: post(multiclass_server, "/predict", [r]), rows))
    assert [r.status_code for r in responses] == [200] * 64
    rows_after, calls_after = adaptive_batches(multiclass_server.url)
    assert rows_after - rows_before == 64
    # 64 concurrent requests: batching must have merged some of them
    assert calls_after - calls_before < 64


def served_services(server: BentoServer) -> list[str]:
    """The `--service-name` of every worker process under `bentoml serve`."""
    names = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        args = child.cmdline()
        if "--service-name" in args:
            names.append(args[args.index("--service-name") + 1])
    return sorted(names)


def test_fused_serves_no_model_service_process(multiclass_server: BentoServer,
                                               topology: str) -> None:
    services = served_services(multiclass_server)
    if topology == "fused":  # the model in every API worker, one per usable CPU
        assert services == ["agbento"] * usable_cpus()
        assert "agbento-model" not in multiclass_server.log()
    else:
        assert services == ["agbento", "agbento-model"]


def test_metrics_endpoint_counts_requests(multiclass_server: BentoServer) -> None:
    post(multiclass_server, "/predict", penguin_rows("species", 1))
    text = httpx.get(f"{multiclass_server.url}/metrics").text
    assert 'bentoml_service_request_total{' in text
    assert 'endpoint="/predict"' in text


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/no/such/path", 404, "not_found"),
    ("GET", "/predict", 405, "method_not_allowed"),
    ("DELETE", "/health", 405, "method_not_allowed"),
])
def test_unrouted_requests_answer_in_the_error_shape(
        multiclass_server: BentoServer, method: str, path: str, status: int, code: str) -> None:
    answer = httpx.request(method, f"{multiclass_server.url}{path}")
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["error"]["code"] == code and path in body["error"]["message"]
    assert body["request_id"] == answer.headers["x-request-id"]
