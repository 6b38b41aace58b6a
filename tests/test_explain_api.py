"""POST /explain and KServe V1 :explain through real servers (both topologies), the batch
client's --explain, and the explanation runner in process.

Through the server: contributions add up to what /predict_proba (classifiers) and /predict
(regression) answer for the same rows, on every kind of model the tests train (binary,
multiclass, regression, a model on a date and free text); `top` and `class`; bad input as
/predict answers it; the row limit; V1; the batch client; the cache never answers.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agbento.core.errors import ApiError
from agbento.core.wire import ARROW_STREAM, PARQUET
from agbento.rows.explain_options import ExplainOptions
from agbento.rows.response_models import ExplanationResponse
from agbento.rows.schema import json_records
from agbento.runtime import explaining
from agbento.runtime.explaining import (
    ExplainedRows,
    ExplainRequest,
    ExplanationRunner,
    explanation_records,
)
from agbento.runtime.inference import TabularRuntime
from tests.conftest import MAX_EXPLAIN_ROWS, ROOT
from tests.helpers import GOOD, batch, metric_samples, penguin_file, penguin_rows, total
from tests.servers import BentoServer, start_server
from tests.tiny_models import TinyModels, dates_text_table, loose_schema_model, train_table_model

TOLERANCE = 1e-6
# The multiclass session server's /explain limit (below its AGBENTO_MAX_ROWS).
EXPLAIN_ROWS = MAX_EXPLAIN_ROWS


def explain(server: BentoServer, body: Any = None, **kwargs: Any) -> httpx.Response:
    if body is not None:
        kwargs["json"] = body
    return httpx.post(f"{server.url}/explain", timeout=120, **kwargs)


def features_of(server: BentoServer) -> list[str]:
    info = httpx.get(f"{server.url}/model/info", timeout=30).json()
    return [f["name"] for f in info["schema"]["features"]]


def explained_output(row: dict[str, Any]) -> float:
    """base_value + the contributions (+ the rest, with top): the explained output."""
    return row["base_value"] + sum(row["contributions"].values()) + row.get("others", 0.0)


def assert_adds_up(rows: list[dict[str, Any]], expected: list[float]) -> None:
    assert len(rows) == len(expected)
    for i, (row, value) in enumerate(zip(rows, expected, strict=True)):
        error = abs(explained_output(row) - value) / max(1.0, abs(value))
        assert error <= TOLERANCE, (i, row, value, error)


# -- additivity through the server ----------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(("kind", "label"), [("multiclass", "species"), ("binary", "sex")])
def test_classifier_contributions_add_up_to_predict_proba(
        request: pytest.FixtureRequest, topology: str, kind: str, label: str) -> None:
    # `topology` named here: a server looked up by name does not parametrize the test
    server: BentoServer = request.getfixturevalue(f"{kind}_server")
    rows = penguin_rows(label, 200, seed=21)
    answer = explain(server, {"data": rows})
    assert answer.status_code == 200, answer.text[:500]
    body = answer.json()
    ExplanationResponse.model_validate(body)
    assert answer.headers["x-agbento-model"] == body["model"]["tag"]
    explanations = body["explanations"]
    proba = httpx.post(f"{server.url}/predict_proba", json={"data": rows}, timeout=60).json()
    predicted = httpx.post(f"{server.url}/predict", json={"data": rows}, timeout=60).json()
    # the prediction is /predict's, the explained class the predicted one
    assert [e["prediction"] for e in explanations] == predicted["predictions"]
    assert [e["explained_class"] for e in explanations] == [
        str(p) for p in predicted["predictions"]]
    assert_adds_up(explanations, [p[e["explained_class"]] for p, e in
                                  zip(proba["probabilities"], explanations, strict=True)])
    features = features_of(server)
    assert all(list(e["contributions"]) == features for e in explanations)
    assert {e["method"] for e in explanations} == {"tree_shap_margin_rescaled"}


@pytest.mark.integration
def test_regression_contributions_add_up_to_predict(regression_server: BentoServer) -> None:
    rows = penguin_rows("body_mass_g", 150, seed=22)
    explanations = explain(regression_server, {"data": rows}).json()["explanations"]
    values = httpx.post(f"{regression_server.url}/predict", json={"data": rows},
                        timeout=60).json()["predictions"]
    assert [e["prediction"] for e in explanations] == values
    assert all("explained_class" not in e for e in explanations)
    assert_adds_up(explanations, values)
    assert {e["method"] for e in explanations} == {"tree_shap"}


@pytest.fixture(scope="session")
def dates_text(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, pd.DataFrame]:
    table = dates_text_table(seed=4)
    card = train_table_model(table, "tiny-dates-text-served", "cost",
                             tmp_path_factory.mktemp("dates-text"))
    return card, table


@pytest.fixture(scope="session")
def dates_text_server(dates_text: tuple[Any, pd.DataFrame],
                      topology: str) -> Iterator[BentoServer]:
    with start_server(ROOT, dates_text[0].tag, AGBENTO_TOPOLOGY=topology) as server:
        yield server


@pytest.mark.integration
@pytest.mark.parametrize("media", ["text/csv", PARQUET])
def test_a_date_and_free_text_add_up_from_file_bodies(
        dates_text_server: BentoServer, dates_text: tuple[Any, pd.DataFrame],
        media: str) -> None:
    rows = dates_text[1].drop(columns="cost").iloc[:120]
    buffer = io.BytesIO()
    if media == PARQUET:
        rows.to_parquet(buffer, index=False)  # a real timestamp column
    else:
        rows.to_csv(buffer, index=False)  # dates as text, parsed by the schema
    answer = explain(dates_text_server, content=buffer.getvalue(),
                     headers={"content-type": media})
    assert answer.status_code == 200, answer.text[:500]
    explanations = answer.json()["explanations"]
    values = httpx.post(f"{dates_text_server.url}/predict",
                        json={"data": json_records(rows)}, timeout=60).json()["predictions"]
    assert_adds_up(explanations, values)
    assert list(explanations[0]["contributions"]) == ["date", "remarks", "speed", "sky"]
    # the label moves with 'smoke' in the remarks: its contribution says so
    smoke = rows["remarks"].str.split().map(lambda words: "smoke" in words).to_numpy()
    remarks = np.array([e["contributions"]["remarks"] for e in explanations])
    assert remarks[smoke].mean() > 3 > remarks[~smoke].mean()


# -- top, class, and the table answer --------------------------------------------------------


@pytest.mark.integration
def test_top_and_a_chosen_class(multiclass_server: BentoServer) -> None:
    rows = penguin_rows("species", 30, seed=23)
    full = explain(multiclass_server, {"data": rows, "class": "Gentoo"}).json()["explanations"]
    top = explain(multiclass_server, {"data": rows, "class": "Gentoo", "top": 2})
    assert top.status_code == 200, top.text[:300]
    proba = httpx.post(f"{multiclass_server.url}/predict_proba", json={"data": rows},
                       timeout=60).json()["probabilities"]
    kept = top.json()["explanations"]
    assert {e["explained_class"] for e in kept} == {"Gentoo"}
    assert_adds_up(kept, [p["Gentoo"] for p in proba])
    assert_adds_up(full, [p["Gentoo"] for p in proba])
    for short, whole in zip(kept, full, strict=True):
        largest = sorted(whole["contributions"].items(), key=lambda kv: -abs(kv[1]))[:2]
        assert list(short["contributions"].items()) == largest
        assert short["prediction"] == whole["prediction"]  # the prediction is not the class


@pytest.mark.integration
def test_file_bodies_take_top_and_class_from_the_query_and_answer_tables(
        multiclass_server: BentoServer) -> None:
    rows = pd.DataFrame(penguin_rows("species", 12, seed=24))
    csv = rows.to_csv(index=False).encode()
    features = features_of(multiclass_server)
    as_json = explain(multiclass_server, params={"top": 3, "class": "Adelie"}, content=csv,
                      headers={"content-type": "text/csv"}).json()["explanations"]
    for media in (ARROW_STREAM, PARQUET):
        answer = explain(multiclass_server, params={"top": 3, "class": "Adelie"}, content=csv,
                         headers={"content-type": "text/csv", "accept": media})
        assert answer.status_code == 200, answer.text[:300]
        assert answer.headers["content-type"].startswith(media)
        assert answer.headers["x-agbento-model"]
        table = (pa.ipc.open_stream(answer.content).read_all() if media == ARROW_STREAM
                 else pq.read_table(io.BytesIO(answer.content)))
        assert table.column_names == ["prediction", "explained_class", "base_value", "method",
                                      *(f"contrib_{f}" for f in features), "others", "error"]
        frame = table.to_pandas()
        for i, row in enumerate(as_json):  # the same numbers as the JSON answer
            assert frame.loc[i, "base_value"] == row["base_value"]
            assert frame.loc[i, "others"] == row["others"]
            named = {f: frame.loc[i, f"contrib_{f}"] for f in features}
            assert {f: v for f, v in named.items() if not np.isnan(v)} == row["contributions"]
        assert set(frame["explained_class"]) == {"Adelie"}


# -- bad input, limits, the explain path's own refusals ---------------------------------------


def refusal(response: httpx.Response) -> tuple[int, str, list[dict[str, Any]]]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["details"]


@pytest.mark.integration
def test_bad_input_is_refused_as_predict_refuses_it(multiclass_server: BentoServer) -> None:
    bad = [GOOD, {**GOOD, "bill_length_mm": "long"}, {"island": "Atlantis"}]
    for body, content_type in [(json.dumps({"data": bad}).encode(), "application/json"),
                               (pd.DataFrame(bad).to_csv(index=False).encode(), "text/csv"),
                               (b"{not json", "application/json"),
                               (b'{"rows": []}', "application/json"),
                               (b'{"data": []}', "application/json")]:
        headers = {"content-type": content_type}
        explained = explain(multiclass_server, content=body, headers=headers)
        predicted = httpx.post(f"{multiclass_server.url}/predict", content=body,
                               headers=headers, timeout=30)
        assert 400 <= explained.status_code < 500
        assert refusal(explained) == refusal(predicted)
    details = explain(multiclass_server, {"data": bad}).json()["error"]["details"]
    assert {"row": 1, "field": "bill_length_mm",
            "problem": "expected a number, got the string 'long'"} in details
    # skip mode: the good row explained, the bad ones null in place and listed
    skipped = explain(multiclass_server, {"data": bad, "on_error": "skip"}).json()
    assert skipped["explanations"][0] is not None
    assert skipped["explanations"][1:] == [None, None]
    assert sorted({e["row"] for e in skipped["errors"]}) == [1, 2]


@pytest.mark.integration
def test_the_explain_options_are_checked(multiclass_server: BentoServer,
                                         regression_server: BentoServer) -> None:
    rows = [GOOD]
    cases = [
        (multiclass_server, {"data": rows, "class": "Dodo"}, 422, "unknown_class", "'Dodo'"),
        (multiclass_server, {"data": rows, "top": 0}, 400, "bad_request", "`top`"),
        (multiclass_server, {"data": rows, "top": 1.5}, 400, "bad_request", "`top`"),
        (multiclass_server, {"data": rows, "class": ["Gentoo"]}, 400, "bad_request", "`class`"),
        (multiclass_server, {"data": rows, "tops": 1}, 400, "bad_request", "'tops'"),
        (regression_server, {"data": rows, "class": "Gentoo"}, 400, "not_a_classifier",
         "regression"),
    ]
    for server, body, status, code, named in cases:
        answer = explain(server, body)
        assert answer.status_code == status, (body, answer.text[:300])
        error = answer.json()["error"]
        assert error["code"] == code and named in error["message"], (body, error)
    query = explain(multiclass_server, {"data": rows}, params={"top": "x"})
    assert query.status_code == 400 and "`top`" in query.json()["error"]["message"]
    # /predict takes no explain options
    refused = httpx.post(f"{multiclass_server.url}/predict", json={"data": rows, "top": 2},
                         timeout=30)
    assert refused.status_code == 400


@pytest.mark.integration
def test_the_row_limit_is_its_own_and_named(multiclass_server: BentoServer) -> None:
    rows = penguin_rows("species", EXPLAIN_ROWS + 1, seed=25)
    for content, content_type in [(json.dumps({"data": rows}).encode(), "application/json"),
                                  (parquet_of(rows), PARQUET)]:
        answer = explain(multiclass_server, content=content,
                         headers={"content-type": content_type})
        assert answer.status_code == 413, answer.text[:300]
        error = answer.json()["error"]
        assert error["code"] == "too_many_rows"
        assert "AGBENTO_MAX_EXPLAIN_ROWS" in error["message"]
        assert str(EXPLAIN_ROWS) in error["message"]
    assert explain(multiclass_server, {"data": rows[:EXPLAIN_ROWS]}).status_code == 200
    # /predict keeps AGBENTO_MAX_ROWS
    predicted = httpx.post(f"{multiclass_server.url}/predict", json={"data": rows}, timeout=60)
    assert predicted.status_code == 200
    unsupported = explain(multiclass_server, content=b"rows", headers={"content-type":
                                                                       "text/plain"})
    assert unsupported.status_code == 415


def parquet_of(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer, index=False)
    return buffer.getvalue()


# -- V1, batch, cache, metrics, logs, docs --------------------------------------------------


@pytest.mark.integration
def test_kserve_v1_explain_answers_explain_s_rows(multiclass_server: BentoServer) -> None:
    rows = penguin_rows("species", 5, seed=26)
    v1 = httpx.post(f"{multiclass_server.url}/v1/models/tiny-species:explain",
                    json={"instances": rows}, timeout=60)
    assert v1.status_code == 200, v1.text[:300]
    assert v1.headers["x-agbento-model"]
    direct = explain(multiclass_server, {"data": rows}).json()["explanations"]
    assert v1.json() == {"explanations": direct}
    # value lists in feature order, as :predict takes them
    features = features_of(multiclass_server)
    lists = [[row.get(f) for f in features] for row in rows]
    as_lists = httpx.post(f"{multiclass_server.url}/v1/models/tiny-species:explain",
                          json={"instances": lists}, timeout=60)
    assert as_lists.json() == {"explanations": direct}
    bad = httpx.post(f"{multiclass_server.url}/v1/models/tiny-species:explain",
                     json={"instances": [{**GOOD, "year": "soon"}]}, timeout=30)
    assert bad.status_code == 400 and "row 0, field 'year'" in bad.json()["error"]
    other = httpx.post(f"{multiclass_server.url}/v1/models/other:explain",
                       json={"instances": rows}, timeout=30)
    assert other.status_code == 404
    many = httpx.post(f"{multiclass_server.url}/v1/models/tiny-species:explain",
                      json={"instances": penguin_rows("species", EXPLAIN_ROWS + 1)}, timeout=60)
    assert many.status_code == 413 and "AGBENTO_MAX_EXPLAIN_ROWS" in many.json()["error"]


@pytest.mark.integration
def test_batch_explain_writes_what_explain_answers(multiclass_server: BentoServer,
                                                   tmp_path: Path) -> None:
    source, output = tmp_path / "penguins.csv", tmp_path / "explained.parquet"
    frame = penguin_file(source, 250, seed=27)
    result = batch(str(source), str(output), "--url", multiclass_server.url, "--id-column",
                   "penguin_id", "--explain", "--top", "3", "--class", "Chinstrap",
                   "--chunk-rows", "100")
    assert result.returncode == 0, result.stderr[-2000:]
    written = pd.read_parquet(output)
    answer = explain(multiclass_server, params={"top": 3, "class": "Chinstrap"},
                     content=source.read_bytes(), headers={"content-type": "text/csv"})
    assert answer.status_code == 200, answer.text[:300]
    features = features_of(multiclass_server)
    expected = pd.DataFrame([{
        "penguin_id": pid, "prediction": e["prediction"],
        "explained_class": e["explained_class"], "base_value": e["base_value"],
        "method": e["method"],
        **{f"contrib_{f}": e["contributions"].get(f, np.nan) for f in features},
        "others": e["others"]} for pid, e in zip(frame["penguin_id"],
                                                 answer.json()["explanations"], strict=True)])
    pd.testing.assert_frame_equal(written, expected, check_exact=True)


@pytest.mark.integration
def test_the_cache_never_answers_and_metrics_and_logs_count_it(
        multiclass_server: BentoServer) -> None:
    rows = penguin_rows("species", 3, seed=28)
    before = metric_samples(multiclass_server.url)
    request_ids = []
    for attempt in range(2):  # the same rows twice: the second is computed again
        answer = explain(multiclass_server, {"data": rows},
                         headers={"x-request-id": f"explain-cache-{attempt}-{id(rows)}"})
        assert answer.status_code == 200
        request_ids.append(answer.headers["x-request-id"])
    after = metric_samples(multiclass_server.url)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("agbento_explain_duration_seconds_count") == 2
    assert grew("agbento_explained_rows_total") == 6
    assert grew("agbento_cache_lookups_total") == 0
    assert grew("agbento_requests_total", endpoint="/explain", status="200") == 2
    assert grew("agbento_rows_total", endpoint="/explain") == 6
    assert grew("agbento_request_duration_seconds_count", endpoint="/explain") == 2
    for request_id in request_ids:
        (line,) = multiclass_server.log_lines_with(request_id)
        logged = json.loads(line)
        assert (logged["endpoint"], logged["status"], logged["rows"]) == ("/explain", 200, 3)
        assert logged["model"].startswith("tiny-species:")
    # a large request goes on as columns (AGBENTO_COLUMNAR_MIN_ROWS): its rows count too
    large = explain(multiclass_server, {"data": penguin_rows("species", 250, seed=33)},
                    headers={"x-request-id": f"explain-columnar-{id(rows)}"})
    assert large.status_code == 200
    (line,) = multiclass_server.log_lines_with(large.headers["x-request-id"])
    assert json.loads(line)["rows"] == 250


@pytest.mark.integration
def test_concurrent_requests_each_get_their_own_class(multiclass_server: BentoServer) -> None:
    """Concurrent requests may be merged into one explainer call: each keeps its class; and
    predictions answered meanwhile (the predictor serves both threads) are unchanged."""
    rows = penguin_rows("species", 24, seed=29)
    asked = [None, "Adelie", "Gentoo", "Chinstrap"]
    requests = [(rows[i:i + 2], asked[i // 2 % 4]) for i in range(0, len(rows), 2)]
    proba = httpx.post(f"{multiclass_server.url}/predict_proba", json={"data": rows},
                       timeout=60).json()["probabilities"]

    async def all_at_once() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=multiclass_server.url, timeout=60) as client:
            explained = [client.post("/explain",
                                     json={"data": part, **({"class": c} if c else {})})
                         for part, c in requests]
            # beside them, the same rows' probabilities, above the cache's 100 rows
            predicted = [client.post("/predict_proba", json={"data": rows * 5})
                         for _ in requests]
            answers = await asyncio.gather(*explained, *predicted)
        return ([a.json() for a in answers[:len(requests)]],
                [a.json() for a in answers[len(requests):]])

    answers, predictions = asyncio.run(all_at_once())
    assert all(p["probabilities"] == proba * 5 for p in predictions)
    for k, ((part, asked_class), answer) in enumerate(zip(requests, answers, strict=True)):
        explanations = answer["explanations"]
        probabilities = proba[2 * k:2 * k + len(part)]
        if asked_class is not None:
            assert {e["explained_class"] for e in explanations} == {asked_class}
        else:
            assert [e["explained_class"] for e in explanations] == [
                max(p, key=p.get) for p in probabilities]
        assert_adds_up(explanations, [p[e["explained_class"]] for p, e in
                                      zip(probabilities, explanations, strict=True)])


@pytest.mark.integration
def test_docs_show_explain_with_its_answer(multiclass_server: BentoServer) -> None:
    docs = httpx.get(f"{multiclass_server.url}/docs.json", timeout=30).json()
    assert "/explain" in docs["paths"]
    schemas = docs["components"]["schemas"]
    assert "Explanation" in schemas
    assert {"prediction", "explained_class", "base_value", "contributions", "method"} <= set(
        schemas["Explanation"]["properties"])


# -- in process: the runner, the hop, the options --------------------------------------------


@pytest.fixture(scope="module")
def runtime(tiny_models: TinyModels) -> TabularRuntime:
    return TabularRuntime.load(tiny_models.multiclass)


def value_lists(runtime: TabularRuntime, records: list[dict[str, Any]]) -> list[list[Any]]:
    validated = runtime.schema.validate_rows(records)
    assert validated.ok, validated.problems[:3]
    return validated.rows


def test_an_answer_crosses_the_hop_unchanged(runtime: TabularRuntime) -> None:
    runner = ExplanationRunner(runtime, 100)
    rows = value_lists(runtime, penguin_rows("species", 7, seed=30))
    (answer,) = runner.explain_requests([ExplainRequest(rows, "Chinstrap")])
    crossed = ExplainedRows.from_dict(json.loads(json.dumps(answer.to_dict())))
    assert crossed.table.equals(answer.table)
    names = runtime.schema.names
    assert explanation_records(crossed.table, names, 2) == explanation_records(
        answer.table, names, 2)
    placed = answer.placed([0, 2, 3, 5, 6, 8, 9], 10)
    records = explanation_records(placed.table, names)
    assert [r is None for r in records] == [False, True, False, False, True, False, False,
                                            True, False, False]
    assert records[2] == explanation_records(answer.table, names)[1]


def test_merged_requests_answer_as_alone(runtime: TabularRuntime) -> None:
    runner = ExplanationRunner(runtime, 100)
    records = penguin_rows("species", 9, seed=31)
    first = ExplainRequest(value_lists(runtime, records[:4]), "Gentoo")
    second = ExplainRequest(runtime.schema.to_frame(value_lists(runtime, records[4:])), None)
    merged = runner.explain_requests([first, second])
    alone = [runner.explain_requests([r])[0] for r in (first, second)]
    for together, by_itself in zip(merged, alone, strict=True):
        np.testing.assert_allclose(together.table.column("base_value").to_numpy(),
                                   by_itself.table.column("base_value").to_numpy(), atol=1e-12)
        assert together.table.column("explained_class").to_pylist() == by_itself.table.column(
            "explained_class").to_pylist()


def test_a_row_the_model_cannot_explain_fails_only_itself(tiny_models: TinyModels) -> None:
    """The loose model's schema lets text through where the predictor needs a number."""
    card = loose_schema_model(tiny_models.multiclass, "bill_length_mm")
    runtime = TabularRuntime.load(card)
    runner = ExplanationRunner(runtime, 100)
    good = [{**row, "bill_length_mm": str(row["bill_length_mm"])}
            for row in penguin_rows("species", 3, seed=32) if row["bill_length_mm"] is not None]
    poisoned = [good[0], {**good[1], "bill_length_mm": "long"}, good[2]]
    other = ExplainRequest(value_lists(runtime, good))
    hit = ExplainRequest(value_lists(runtime, poisoned))
    first, second = runner.explain_requests([other, hit])
    assert not first.failed and len(first) == len(good)
    assert [f["row"] for f in second.failed] == [1]
    assert "could not explain this row" in second.failed[0]["problem"]
    records = explanation_records(second.table, runtime.schema.names)
    assert records[1] is None and records[0] is not None and records[2] is not None


def test_a_broken_or_unexplainable_model_answers_5xx(runtime: TabularRuntime,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    runner = ExplanationRunner(runtime, 100)
    request = ExplainRequest(value_lists(runtime, [GOOD]))
    monkeypatch.setattr(runtime, "fault", "ValueError")
    (broken,) = runner.explain_requests([request])
    with pytest.raises(ApiError) as raised:
        broken.unless_model_broken()
    assert raised.value.status == 503 and raised.value.code == "model_error"
    monkeypatch.setattr(runtime, "fault", None)

    def no_method(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("the model-agnostic method needs background rows")

    monkeypatch.setattr(explaining.Explainer, "load", no_method)
    unexplainable = ExplanationRunner(runtime, 100)
    (answer,) = unexplainable.explain_requests([request])
    crossed = ExplainedRows.from_dict(answer.to_dict())  # split says it too
    with pytest.raises(ApiError) as raised:
        crossed.unless_model_broken()
    assert raised.value.status == 501 and "background rows" in raised.value.message


@pytest.mark.parametrize(("body", "query", "expected"), [
    ({}, {}, ExplainOptions()),
    ({"top": 3, "class": "Gentoo"}, {}, ExplainOptions(3, "Gentoo")),
    ({"top": 3}, {"top": ["5"], "class": ["Adelie"]}, ExplainOptions(5, "Adelie")),
    ({"class": 1}, {}, ExplainOptions(None, "1")),
    ({"class": True}, {}, ExplainOptions(None, "True")),
])
def test_options_come_from_the_body_and_the_query_wins(
        body: dict[str, Any], query: dict[str, list[str]], expected: ExplainOptions) -> None:
    assert ExplainOptions.read(body, query) == expected


@pytest.mark.parametrize("body", [{"top": 0}, {"top": -1}, {"top": 2.5}, {"top": True},
                                  {"top": "many"}, {"class": 1.5}, {"class": ""},
                                  {"class": {"a": 1}}, {"class": "x" * 300}])
def test_bad_options_are_400(body: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as raised:
        ExplainOptions.read(body, {})
    assert raised.value.status == 400
