"""Open Inference Protocol V2 and KServe V1 with real clients no one here wrote.

tritonclient runs in this venv; KServe's SDK and MLServer's PandasCodec cannot install beside
bentoml 1.4.39's pins, so they run in a venv of their own (tests/protocol_clients). Every
client's answers must equal /predict's on the same rows, on a server that requires keys.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from agbento.protocols.v2 import sanitize_label
from tests.conftest import MAX_BODY_BYTES, MAX_ROWS, ApiKeys
from tests.helpers import adaptive_batches, penguin_rows
from tests.protocol_clients.venv import HERE as CLIENTS_DIR
from tests.protocol_clients.venv import client_python
from tests.servers import BentoServer, start_server
from tests.tiny_models import TinyModels

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def v2_server(tiny_models: TinyModels, api_keys: ApiKeys) -> Iterator[BentoServer]:
    limits = {"AGBENTO_MAX_ROWS": str(MAX_ROWS), "AGBENTO_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    # one API worker: the in-memory cache V2 and /predict share is per worker
    with start_server(ROOT, tiny_models.multiclass.tag, AGBENTO_API_KEYS_FILE=str(api_keys.file),
                      AGBENTO_API_WORKERS="1", **limits) as server:
        yield server


def model_name(tiny_models: TinyModels) -> str:
    return tiny_models.multiclass.tag.split(":")[0]


def client(server: BentoServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"),
                                        network_timeout=60, connection_timeout=60)


def complete_rows(n: int) -> list[dict[str, Any]]:
    """Penguin rows with every BYTES feature set (a BYTES tensor has no null), one of them
    with a missing number (NaN in a number tensor)."""
    rows = [r for r in penguin_rows("species", 3 * n, seed=7) if r.get("sex")][:n]
    rows[1] = {**rows[1], "bill_length_mm": None}
    return rows


def predict(server: BentoServer, rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/predict", json={"data": rows},
                          headers={"X-API-Key": key}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def triton_inputs(rows: list[dict[str, Any]], metadata: dict[str, Any],
                  binary: bool) -> list[triton.InferInput]:
    inputs = []
    for spec in metadata["inputs"]:
        values = [row.get(spec["name"]) for row in rows]
        if spec["datatype"] == "BYTES":
            array = np.array(values, dtype=np.object_)
        else:
            array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            if spec["datatype"] == "INT64":
                array = array.astype(np.int64)
        tensor = triton.InferInput(spec["name"], [len(rows), 1], spec["datatype"])
        tensor.set_data_from_numpy(array.reshape(-1, 1), binary_data=binary)
        inputs.append(tensor)
    return inputs


def assert_same_answers(outputs: dict[str, list[Any]], expected: dict[str, Any],
                        classes: list[Any]) -> None:
    assert outputs["predictions"] == expected["predictions"]
    for label in classes:
        wanted = [row[str(label)] for row in expected["probabilities"]]
        assert outputs[f"proba_{sanitize_label(label)}"] == pytest.approx(wanted, abs=1e-12)


def test_tritonclient_probes_and_metadata(v2_server: BentoServer, tiny_models: TinyModels,
                                          api_keys: ApiKeys) -> None:
    name = model_name(tiny_models)
    version = tiny_models.multiclass.tag.split(":")[1]
    triton_client = client(v2_server)
    # health is open, like the probes; metadata needs a key with model_info
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready(name)
    assert triton_client.is_model_ready(name, version)
    assert not triton_client.is_model_ready("no-such-model")
    assert triton_client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    metadata = triton_client.get_model_metadata(name, headers=api_keys.header("reader"))
    assert metadata == triton_client.get_model_metadata(name, version,
                                                        headers=api_keys.header("reader"))
    schema = tiny_models.multiclass.schema
    assert [i["name"] for i in metadata["inputs"]] == schema.names
    assert {i["datatype"] for i in metadata["inputs"]} <= {"FP64", "INT64", "BYTES", "BOOL"}
    assert [o["name"] for o in metadata["outputs"]] == ["predictions", *(
        f"proba_{sanitize_label(c)}" for c in schema.label.classes)]
    for who, status in ((None, "401"), ("scorer", "403")):
        with pytest.raises(InferenceServerException) as refused:
            triton_client.get_model_metadata(name, headers=api_keys.header(who) if who else None)
        assert refused.value.status() == status
    with pytest.raises(InferenceServerException) as missing:
        triton_client.get_model_metadata("no-such-model", headers=api_keys.header("reader"))
    assert missing.value.status() == "404" and "no-such-model" in missing.value.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer_equals_predict(v2_server: BentoServer, tiny_models: TinyModels,
                                           api_keys: ApiKeys, binary: bool) -> None:
    name = model_name(tiny_models)
    triton_client = client(v2_server)
    metadata = triton_client.get_model_metadata(name, headers=api_keys.header("admin"))
    rows = complete_rows(60)
    result = triton_client.infer(name, triton_inputs(rows, metadata, binary),
                                 request_id="triton-1", headers=api_keys.header("scorer"),
                                 outputs=None if binary else [
                                     triton.InferRequestedOutput(o["name"], binary_data=False)
                                     for o in metadata["outputs"]])
    outputs = {o["name"]: [v.decode() if isinstance(v, bytes) else v
                           for v in result.as_numpy(o["name"]).tolist()]
               for o in metadata["outputs"]}
    expected = predict(v2_server, rows, api_keys.keys["scorer"])
    assert_same_answers(outputs, expected, list(tiny_models.multiclass.schema.label.classes))
    assert result.get_response()["id"] == "triton-1"


def test_tritonclient_asks_for_some_outputs(v2_server: BentoServer, tiny_models: TinyModels,
                                            api_keys: ApiKeys) -> None:
    name = model_name(tiny_models)
    triton_client = client(v2_server)
    metadata = triton_client.get_model_metadata(name, headers=api_keys.header("admin"))
    wanted = metadata["outputs"][-1]["name"]
    result = triton_client.infer(name, triton_inputs(complete_rows(3), metadata, True),
                                 outputs=[triton.InferRequestedOutput(wanted)],
                                 headers=api_keys.header("scorer"))
    assert [o["name"] for o in result.get_response()["outputs"]] == [wanted]
    assert result.as_numpy(wanted).shape == (3,)


def refusal(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as refused:
        call()
    return refused.value


def test_tritonclient_bad_inputs_are_400_naming_input_and_row(
        v2_server: BentoServer, tiny_models: TinyModels, api_keys: ApiKeys) -> None:
    name = model_name(tiny_models)
    triton_client = client(v2_server)
    metadata = triton_client.get_model_metadata(name, headers=api_keys.header("admin"))
    rows = complete_rows(4)
    key = api_keys.header("scorer")
    numbers = [i for i in metadata["inputs"] if i["datatype"] in ("FP64", "INT64")]
    texts = [i for i in metadata["inputs"] if i["datatype"] == "BYTES"]

    # a value the schema refuses: row and input named, status 400 (not 422)
    bad = [dict(r) for r in rows]
    bad[2][numbers[0]["name"]] = float("inf")
    error = refusal(lambda: triton_client.infer(name, triton_inputs(bad, metadata, True),
                                                headers=key))
    assert error.status() == "400"
    assert f"row 2, input {numbers[0]['name']!r}" in error.message(), error.message()

    # a number tensor for a text feature
    inputs = triton_inputs(rows, metadata, True)
    index = metadata["inputs"].index(texts[0])
    wrong = triton.InferInput(texts[0]["name"], [len(rows)], "FP64")
    wrong.set_data_from_numpy(np.ones(len(rows)))
    inputs[index] = wrong
    error = refusal(lambda: triton_client.infer(name, inputs, headers=key))
    assert error.status() == "400" and f"input {texts[0]['name']!r}" in error.message()
    assert "FP64" in error.message()

    # a missing feature
    required = [f.name for f in tiny_models.multiclass.schema.features if not f.nullable]
    inputs = [t for t in triton_inputs(rows, metadata, True) if t.name() != required[0]]
    error = refusal(lambda: triton_client.infer(name, inputs, headers=key))
    assert error.status() == "400" and repr(required[0]) in error.message()

    # without a key, or with a key that may only read metadata
    for headers, status in ((None, "401"), (api_keys.header("reader"), "403")):
        error = refusal(lambda h=headers: triton_client.infer(
            name, triton_inputs(rows, metadata, True), headers=h))
        assert error.status() == status and "key" in error.message().lower()


def test_v2_limits_and_error_shape_over_plain_http(v2_server: BentoServer,
                                                   tiny_models: TinyModels,
                                                   api_keys: ApiKeys) -> None:
    url = f"{v2_server.url}/v2/models/{model_name(tiny_models)}/infer"
    key = api_keys.header("scorer")
    too_many = {"inputs": [{"name": "island", "datatype": "BYTES", "shape": [MAX_ROWS + 1],
                            "data": ["Biscoe"] * (MAX_ROWS + 1)}]}
    response = httpx.post(url, json=too_many, headers=key, timeout=30)
    assert response.status_code == 413
    assert set(response.json()) == {"error"} and "AGBENTO_MAX_ROWS" in response.json()["error"]
    huge = b'{"inputs": []}' + b" " * MAX_BODY_BYTES
    response = httpx.post(url, content=huge, headers=key, timeout=30)
    assert response.status_code == 413 and "AGBENTO_MAX_BODY_BYTES" in response.json()["error"]
    response = httpx.post(url, content=b"\x00\x01", timeout=30,
                          headers={**key, "Inference-Header-Content-Length": "1"})
    assert response.status_code == 400 and isinstance(response.json()["error"], str)
    assert response.headers["x-request-id"]
    wrong_version = url.replace("/infer", "/versions/0/infer")
    response = httpx.post(wrong_version, json=too_many, headers=key, timeout=30)
    assert response.status_code == 404 and "version" in response.json()["error"]


def test_kserve_v1_equals_predict(v2_server: BentoServer, tiny_models: TinyModels,
                                  api_keys: ApiKeys) -> None:
    name = model_name(tiny_models)
    rows = penguin_rows("species", 20, seed=11)
    features = tiny_models.multiclass.schema.names
    as_lists = [[row.get(f) for f in features] for row in rows]
    expected = predict(v2_server, rows, api_keys.keys["scorer"])["predictions"]
    for instances in (rows, as_lists):
        response = httpx.post(f"{v2_server.url}/v1/models/{name}:predict",
                              json={"instances": instances}, headers=api_keys.header("scorer"),
                              timeout=60)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
    response = httpx.get(f"{v2_server.url}/v1/models/{name}", timeout=30)
    assert response.json() == {"name": name, "ready": True}
    bad = [{**rows[0], "island": 7.5}]
    response = httpx.post(f"{v2_server.url}/v1/models/{name}:predict", json={"instances": bad},
                          headers=api_keys.header("scorer"), timeout=30)
    assert response.status_code == 400
    assert "row 0, field 'island'" in response.json()["error"]


def test_v2_requests_count_in_the_shared_metrics(v2_server: BentoServer,
                                                 tiny_models: TinyModels,
                                                 api_keys: ApiKeys) -> None:
    triton_client = client(v2_server)
    name = model_name(tiny_models)
    metadata = triton_client.get_model_metadata(name, headers=api_keys.header("admin"))
    triton_client.infer(name, triton_inputs(complete_rows(5), metadata, True),
                        headers=api_keys.header("scorer"))
    metrics = httpx.get(f"{v2_server.url}/metrics", timeout=30).text
    served = [line for line in metrics.splitlines()
              if line.startswith("agbento_rows_total") and 'endpoint="/v2/infer"' in line]
    assert served and float(served[0].rsplit(" ", 1)[1]) >= 5
    assert 'agbento_inference_duration_seconds_count' in metrics


def run_client(which: str, job: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run([str(client_python()), str(CLIENTS_DIR / "run_clients.py"), which],
                            input=json.dumps(job), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def test_kserve_sdk_and_mlserver_pandas_codec_equal_predict(
        v2_server: BentoServer, tiny_models: TinyModels, api_keys: ApiKeys) -> None:
    """In the protocol-clients venv (made once per requirements, cached under .cache/)."""
    name = model_name(tiny_models)
    metadata = httpx.get(f"{v2_server.url}/v2/models/{name}", headers=api_keys.header("reader"),
                         timeout=30).json()
    rows = complete_rows(40)
    job = {"url": v2_server.url, "key": api_keys.keys["scorer"], "model": name, "rows": rows,
           "datatypes": {i["name"]: i["datatype"] for i in metadata["inputs"]}}
    expected = predict(v2_server, rows, api_keys.keys["scorer"])
    classes = list(tiny_models.multiclass.schema.label.classes)

    kserve = run_client("kserve", job)
    assert kserve["live"] and kserve["ready"] and kserve["model_ready"]
    assert kserve["v1_model_ready"]
    for encoding in ("binary", "json"):
        assert_same_answers(kserve[encoding], expected, classes)
    assert kserve["id"] == "kserve-1"
    assert kserve["v1"] == expected["predictions"]
    assert kserve["unauthorized"]["status"] == 401
    assert kserve["wrong_datatype"]["status"] == 400
    assert repr(metadata["inputs"][0]["name"]) in kserve["wrong_datatype"]["message"]

    mlserver = run_client("mlserver", job)
    assert_same_answers(mlserver, expected, classes)


def test_regression_predictions_are_fp64(regression_server: BentoServer,
                                         tiny_models: TinyModels) -> None:
    name = tiny_models.regression.tag.split(":")[0]
    triton_client = client(regression_server)
    metadata = triton_client.get_model_metadata(name)
    assert metadata["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
    rows = [r for r in penguin_rows("body_mass_g", 30, seed=5) if r.get("sex")]
    result = triton_client.infer(name, triton_inputs(rows, metadata, True))
    expected = httpx.post(f"{regression_server.url}/predict", json={"data": rows},
                          timeout=60).json()["predictions"]
    assert result.as_numpy("predictions").tolist() == pytest.approx(expected, rel=1e-12)


def v2_json(rows: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": [{"name": spec["name"], "datatype": spec["datatype"],
                        "shape": [len(rows)], "data": [row.get(spec["name"]) for row in rows]}
                       for spec in metadata["inputs"]]}


def test_v2_shares_batching_and_the_cache_with_predict(v2_server: BentoServer,
                                                       tiny_models: TinyModels,
                                                       api_keys: ApiKeys) -> None:
    name = model_name(tiny_models)
    metadata = httpx.get(f"{v2_server.url}/v2/models/{name}", headers=api_keys.header("reader"),
                         timeout=30).json()
    key = api_keys.header("scorer")
    # rows no other test sends, so the cache cannot answer them the first time
    rows = [{**row, "body_mass_g": 4000.5 + i} for i, row in enumerate(complete_rows(64))]

    def v2(row: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{v2_server.url}/v2/models/{name}/infer",
                          json=v2_json([row], metadata), headers=key, timeout=60)

    def rest(row: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{v2_server.url}/predict", json={"data": [row]}, headers=key,
                          timeout=60)

    def send(pairs: list[tuple[Any, dict[str, Any]]]) -> None:
        with ThreadPoolExecutor(max_workers=32) as pool:
            responses = list(pool.map(lambda pair: pair[0](pair[1]), pairs))
        assert [r.status_code for r in responses] == [200] * len(pairs)

    rows_before, calls_before = adaptive_batches(v2_server.url)
    send([(v2 if i % 2 else rest, row) for i, row in enumerate(rows)])
    rows_after, calls_after = adaptive_batches(v2_server.url)
    assert rows_after - rows_before == 64
    assert calls_after - calls_before < 64  # V2 and /predict requests merged into batches
    # the same rows the other way round: every answer comes from the shared cache
    send([(rest if i % 2 else v2, row) for i, row in enumerate(rows)])
    assert adaptive_batches(v2_server.url)[0] == rows_after


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests(v2_server: BentoServer, tiny_models: TinyModels,
                                          api_keys: ApiKeys, algorithm: str) -> None:
    name = model_name(tiny_models)
    triton_client = client(v2_server)
    metadata = triton_client.get_model_metadata(name, headers=api_keys.header("admin"))
    rows = complete_rows(20)
    result = triton_client.infer(name, triton_inputs(rows, metadata, True),
                                 headers=api_keys.header("scorer"),
                                 request_compression_algorithm=algorithm)
    expected = predict(v2_server, rows, api_keys.keys["scorer"])["predictions"]
    assert [v.decode() for v in result.as_numpy("predictions").tolist()] == expected


def test_compressed_bodies_keep_the_body_limit(v2_server: BentoServer, tiny_models: TinyModels,
                                               api_keys: ApiKeys) -> None:
    url = f"{v2_server.url}/v2/models/{model_name(tiny_models)}/infer"
    headers = {**api_keys.header("scorer"), "Content-Encoding": "gzip"}
    bomb = gzip.compress(b" " * (MAX_BODY_BYTES + 1))  # ~1 KB that inflates past the limit
    response = httpx.post(url, content=bomb, headers=headers, timeout=30)
    assert response.status_code == 413 and "AGBENTO_MAX_BODY_BYTES" in response.json()["error"]
    cut = gzip.compress(b'{"inputs": []}')[:-8]  # without gzip's trailer
    response = httpx.post(url, content=cut, headers=headers, timeout=30)
    assert response.status_code == 400 and "truncated" in response.json()["error"]
    response = httpx.post(url, content=b"not gzip", headers=headers, timeout=30)
    assert response.status_code == 400 and "gzip" in response.json()["error"]
