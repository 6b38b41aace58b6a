"""API keys, permissions, rate limits, model integrity, metrics and logs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agbento.http.auth import digest
from agbento.models.store import ModelCard, ModelIntegrityError, save_model, verify_model
from tests.conftest import ApiKeys
from tests.helpers import GOOD, metric_samples, total
from tests.servers import BentoServer, start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def secured_server(tiny_models: TinyModels, api_keys: ApiKeys, tmp_path_factory) -> Iterator:  # noqa: ANN001
    keys_file = tmp_path_factory.mktemp("live-keys") / "keys.json"
    shutil.copy(api_keys.file, keys_file)
    with start_server(ROOT, tiny_models.multiclass.tag,
                      AGBENTO_API_KEYS_FILE=str(keys_file),
                      AGBENTO_REQUIRE_API_KEYS="true") as server:
        server.keys_file = keys_file  # type: ignore[attr-defined]
        yield server


def call(server: BentoServer, method: str, path: str, key: str | None = None,
         bearer: bool = False) -> httpx.Response:
    headers = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}
    body = None
    if method == "POST":  # KServe V1's paths (a colon) take instances
        body = {"instances": [GOOD]} if ":" in path else {"data": [GOOD]}
    return httpx.request(method, f"{server.url}{path}", json=body, headers=headers, timeout=30)


MATRIX = {
    ("POST", "/predict"): {None: 401, "bad": 401, "expired": 401, "reader": 403,
                           "explainer": 403, "scorer": 200, "admin": 200},
    ("POST", "/predict_proba"): {None: 401, "bad": 401, "expired": 401, "reader": 403,
                                 "scorer": 200, "admin": 200},
    ("GET", "/model/info"): {None: 401, "bad": 401, "expired": 401, "scorer": 403,
                             "reader": 200, "admin": 200},
    ("POST", "/admin/cache/clear"): {None: 401, "bad": 401, "expired": 401, "scorer": 403,
                                     "reader": 403, "admin": 200},
    ("POST", "/admin/model/reload"): {None: 401, "scorer": 403, "labeller": 403, "admin": 200},
    # past the gate, a body without labels is the client's 422
    ("POST", "/feedback"): {None: 401, "bad": 401, "expired": 401, "scorer": 403,
                            "reader": 403, "labeller": 422, "admin": 422},
    # explanations need a permission of their own: a predict key is not enough
    ("POST", "/explain"): {None: 401, "bad": 401, "expired": 401, "reader": 403,
                           "scorer": 403, "explainer": 200, "admin": 200},
    ("POST", "/v1/models/tiny-species:explain"): {None: 401, "expired": 401, "scorer": 403,
                                                  "explainer": 200, "admin": 200},
    ("POST", "/v1/models/tiny-species:predict"): {"explainer": 403, "scorer": 200},
    ("GET", "/livez"): {None: 200},
    ("GET", "/readyz"): {None: 200},
    ("GET", "/health"): {None: 200},
    ("GET", "/metrics"): {None: 200},
}


@pytest.mark.integration
@pytest.mark.parametrize(("method", "path"), list(MATRIX))
def test_auth_matrix(secured_server: BentoServer, api_keys: ApiKeys, method: str,
                     path: str) -> None:
    for who, status in MATRIX[(method, path)].items():
        key = {None: None, "bad": "agb.admin.not-the-secret"}.get(who, api_keys.keys.get(who))
        for bearer in (False, True):
            response = call(secured_server, method, path, key, bearer)
            assert response.status_code == status, (who, bearer, response.text[:300])
            if status in (401, 403) and ":" in path:  # KServe V1: the protocols' shape
                assert isinstance(response.json()["error"], str)
            elif status in (401, 403):
                error = response.json()["error"]
                assert error["code"] == {401: "unauthorized", 403: "forbidden"}[status]
                assert response.json()["request_id"]


def batch_calls(server: BentoServer) -> float:
    return total(metric_samples(server.url), "agbento_batch_requests_count")


@pytest.mark.integration
def test_refused_requests_never_reach_parser_or_model(secured_server: BentoServer) -> None:
    before = batch_calls(secured_server)
    response = httpx.post(f"{secured_server.url}/predict", content=b"not even json",
                          headers={"content-type": "application/json"})
    assert response.status_code == 401  # not 400: the body was never read
    assert call(secured_server, "POST", "/predict").status_code == 401
    assert batch_calls(secured_server) == before


@pytest.mark.integration
def test_keys_cli_and_reload_without_restart(secured_server: BentoServer) -> None:
    keys_file = secured_server.keys_file  # type: ignore[attr-defined]
    cli = [sys.executable, "-m", "agbento.keys"]
    created = subprocess.run([*cli, "create", "--id", "late", "--owner", "ops",
                              "--permissions", "predict", "--file", str(keys_file)],
                             capture_output=True, text=True, cwd=ROOT)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    stored = keys_file.read_text()
    assert key not in stored and digest(key) in stored
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"
    listed = subprocess.run([*cli, "list", "--file", str(keys_file)], capture_output=True,
                            text=True, cwd=ROOT).stdout
    assert "late\tops\tpredict\tnever" in listed and key not in listed

    def status_within(expected: int, seconds: float = 10) -> int:
        deadline = time.monotonic() + seconds
        while (got := call(secured_server, "POST", "/predict", key).status_code) != expected:
            if time.monotonic() > deadline:
                return got
            time.sleep(0.2)
        return got

    assert status_within(200) == 200
    revoked = subprocess.run([*cli, "revoke", "--id", "late", "--file", str(keys_file)],
                             capture_output=True, text=True, cwd=ROOT)
    assert revoked.returncode == 0
    assert status_within(401) == 401
    bad = subprocess.run([*cli, "create", "--id", "x y", "--permissions", "root", "--file",
                          str(keys_file)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.integration
def test_metrics_move_with_traffic(secured_server: BentoServer, api_keys: ApiKeys) -> None:
    before = metric_samples(secured_server.url)
    key = api_keys.keys["scorer"]
    rows = [GOOD, {**GOOD, "island": "Atlantis"}, {**GOOD, "sex": None, "body_mass_g": 9000}]
    response = httpx.post(f"{secured_server.url}/predict", json={"data": rows},
                          headers={"X-API-Key": key})
    assert response.status_code == 200
    bad = httpx.post(f"{secured_server.url}/predict", json={"data": [{"year": "x"}]},
                     headers={"X-API-Key": key})
    assert bad.status_code == 422
    after = metric_samples(secured_server.url)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("agbento_requests_total", endpoint="/predict", status="200",
                 key_id="scorer") == 1
    assert moved("agbento_rows_total", endpoint="/predict", key_id="scorer") == 3
    assert moved("agbento_validation_failures_total", reason="invalid_rows") == 1
    assert moved("agbento_input_unseen_categories_total", feature="island") == 1
    assert moved("agbento_input_out_of_range_total", feature="body_mass_g") == 1
    assert moved("agbento_input_missing_values_total", feature="sex") == 1
    assert sum(moved("agbento_predictions_total", **{"class": c})
               for c in ("Adelie", "Chinstrap", "Gentoo")) == 3
    assert moved("agbento_prediction_confidence_count") == 3
    assert total(after, "agbento_model_info", problem_type="multiclass") == 1
    assert total(after, "agbento_batch_rows_count") > 0
    assert total(after, "agbento_inference_duration_seconds_count") > 0
    assert moved("agbento_request_duration_seconds_count", endpoint="/predict") == 2
    # key ids label the series; keys never do
    text = httpx.get(f"{secured_server.url}/metrics").text
    assert all(k not in text and digest(k) not in text for k in api_keys.keys.values())


@pytest.mark.integration
def test_logs_are_json_and_hold_no_secret(secured_server: BentoServer,
                                          api_keys: ApiKeys) -> None:
    call(secured_server, "POST", "/predict", api_keys.keys["scorer"])
    call(secured_server, "POST", "/predict", api_keys.keys["reader"])
    log = secured_server.log()
    ours = [json.loads(line) for line in log.splitlines() if line.startswith('{"ts"')]
    requests = [line for line in ours if line["logger"] == "agbento.requests"]
    assert requests and all({"request_id", "key_id", "endpoint", "rows", "status",
                             "latency_ms", "model"} <= set(line) for line in requests)
    assert any(line["key_id"] == "scorer" and line["status"] == 200 for line in requests)
    for key in api_keys.keys.values():
        assert key not in log and digest(key) not in log
        assert key.split(".")[2] not in log


@pytest.mark.integration
def test_rate_limit_per_key(tiny_models: TinyModels, api_keys: ApiKeys) -> None:
    # one API worker: a local limit is divided among the workers
    env = {"AGBENTO_API_KEYS_FILE": str(api_keys.file), "AGBENTO_RATE_LIMIT_RPS": "1",
           "AGBENTO_RATE_LIMIT_BURST": "3", "AGBENTO_API_WORKERS": "1"}
    with start_server(ROOT, tiny_models.multiclass.tag, **env) as server:
        statuses = [call(server, "POST", "/predict", api_keys.keys["scorer"]).status_code
                    for _ in range(6)]
        assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
        limited = call(server, "POST", "/predict", api_keys.keys["scorer"])
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # another key has its own bucket
        assert call(server, "POST", "/predict", api_keys.keys["admin"]).status_code == 200


@pytest.mark.integration
def test_refuses_to_start_without_keys_when_required(tiny_models: TinyModels) -> None:
    with pytest.raises(RuntimeError, match="refusing to serve without keys"):
        with start_server(ROOT, tiny_models.multiclass.tag, AGBENTO_REQUIRE_API_KEYS="true"):
            pass


def test_tampered_or_foreign_models_are_refused(tiny_models: TinyModels) -> None:
    card = tiny_models.regression
    verify_model(card)  # the real one passes
    copy = save_model("tampered", card.predictor_path, card.labels, card.metadata)
    victim = next(p for p in copy.predictor_path.rglob("*.pkl"))
    victim.write_bytes(victim.read_bytes() + b"\x00")
    with pytest.raises(ModelIntegrityError, match="differ from what train.py stored"):
        verify_model(copy)
    old = {**card.metadata, "versions": {**card.metadata["versions"],
                                         "autogluon.tabular": "0.8.2"}}
    foreign = ModelCard(card.tag, card.labels, old, card.path)
    with pytest.raises(ModelIntegrityError, match="AGBENTO_ALLOW_VERSION_MISMATCH"):
        verify_model(foreign)
    verify_model(foreign, allow_version_mismatch=True)


@pytest.mark.integration
def test_sampled_prediction_log(tiny_models: TinyModels, tmp_path: Path) -> None:
    env = {"AGBENTO_PREDICTION_LOG_SAMPLE": "1", "AGBENTO_PREDICTION_LOG_DIR": str(tmp_path)}
    with start_server(ROOT, tiny_models.multiclass.tag, **env) as server:
        rows = [GOOD, {**GOOD, "island": "Dream"}]
        answer = httpx.post(f"{server.url}/predict", json={"data": rows}).json()
        data = tmp_path / "agbento_predictions" / "data"
        deadline = time.monotonic() + 10
        while not list(data.glob("data.*.log")) or not next(data.glob("data.*.log")).read_text():
            assert time.monotonic() < deadline, "no prediction log written"
            time.sleep(0.1)
        records = [json.loads(line) for line in next(data.glob("data.*.log")).read_text()
                   .splitlines()]
    assert [r["island"] for r in records] == ["Biscoe", "Dream"]
    assert [r["prediction"] for r in records] == answer["predictions"]
    assert all(r["request_id"] for r in records)
