"""The batch client's table wire (pure code): chunks to Arrow, table answers to columns."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agbento.core.wire import ARROW_STREAM, PARQUET
from agbento.offline.scorers import BODY_PARQUET_COMPRESSION, BatchError, chunk_table, read_answer
from agbento.rows.columns import encode_table

CLASSES = ["Adelie", "Gentoo"]


def answer_table(errors: list[str | None]) -> pa.Table:
    scored = [e is None for e in errors]
    return pa.table({
        "prediction": pa.array([CLASSES[i % 2] if ok else None
                                for i, ok in enumerate(scored)], pa.string()),
        "proba_Adelie": pa.array([0.25 + i / 100 if ok else None
                                  for i, ok in enumerate(scored)], pa.float64()),
        "proba_Gentoo": pa.array([0.75 - i / 100 if ok else None
                                  for i, ok in enumerate(scored)], pa.float64()),
        "error": pa.array(errors, pa.string()),
    })


def response(table: pa.Table, kind: str, model: str | None = "tiny:abc") -> httpx.Response:
    if kind == ARROW_STREAM:
        body = encode_table(table, ARROW_STREAM)
    else:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        body = sink.getvalue()
    headers = {"content-type": kind, "x-request-id": "r1"}
    if model is not None:
        headers["x-agbento-model"] = model
    return httpx.Response(200, content=body, headers=headers)


@pytest.mark.parametrize("kind", [ARROW_STREAM, PARQUET])
def test_a_table_answer_becomes_the_output_columns_and_the_rejects(kind: str) -> None:
    two_fields = json.dumps([{"field": "year", "problem": "not a number: 'someday'"},
                             {"field": "island", "problem": "missing"}])
    whole_row = json.dumps([{"field": None, "problem": "the model could not score this row "
                             "(ValueError)"}])
    quoting = json.dumps([{"field": "mass", "problem": "not a number: 'x; y'"},
                          {"field": "sex", "problem": "missing"}])
    errors = [None, None, two_fields, None, whole_row, None, quoting]
    result = read_answer(response(answer_table(errors), kind), 7, CLASSES)
    assert result.model_tag == "tiny:abc"
    assert list(result.columns.columns) == ["prediction", "proba_Adelie", "proba_Gentoo"]
    assert result.columns["prediction"].tolist()[:2] == ["Adelie", "Gentoo"]
    assert result.columns["prediction"].isna().tolist() == [e is not None for e in errors]
    assert np.allclose(result.columns["proba_Adelie"].to_numpy()[[0, 1, 3]], [0.25, 0.26, 0.28])
    assert result.rejects.values.tolist() == [
        [2, "year", "not a number: 'someday'"],
        [2, "island", "missing"],
        [4, None, "the model could not score this row (ValueError)"],
        [6, "mass", "not a number: 'x; y'"],  # the client's text is never split
        [6, "sex", "missing"],
    ]


def test_an_error_cell_that_is_not_a_problem_list_stops_the_run() -> None:
    with pytest.raises(BatchError, match="not a list of"):
        read_answer(response(answer_table([None, "year: bad"]), ARROW_STREAM), 2, CLASSES)


def test_the_model_header_may_be_the_json_reference() -> None:
    header = json.dumps({"tag": "tiny:def", "problem_type": "multiclass"})
    result = read_answer(response(answer_table([None]), ARROW_STREAM, header), 1, CLASSES)
    assert result.model_tag == "tiny:def" and result.rejects.empty


@pytest.mark.parametrize("problem", ["rows", "column", "model"])
def test_an_answer_that_does_not_fit_the_chunk_stops_the_run(problem: str) -> None:
    table = answer_table([None, None, None])
    if problem == "column":
        table = table.drop(["proba_Gentoo"])
    answer = response(table, ARROW_STREAM, None if problem == "model" else "tiny:abc")
    with pytest.raises(BatchError) as caught:
        read_answer(answer, 4 if problem == "rows" else 3, CLASSES)
    assert {"rows": "3 rows for 4", "column": "proba_Gentoo",
            "model": "x-agbento-model"}[problem] in str(caught.value)


def test_a_json_answer_from_an_older_service_reads_the_same() -> None:
    answer = httpx.Response(200, json={
        "predictions": ["Adelie", None, "Gentoo"],
        "probabilities": [{"Adelie": 0.9, "Gentoo": 0.1}, None, {"Adelie": 0.2, "Gentoo": 0.8}],
        "errors": [{"row": 1, "field": "year", "problem": "bad"}],
        "model": {"tag": "tiny:old"},
    })
    result = read_answer(answer, 3, CLASSES)
    assert result.model_tag == "tiny:old"
    assert result.columns["prediction"].tolist() == ["Adelie", None, "Gentoo"]
    assert np.isnan(result.columns["proba_Gentoo"][1])
    assert result.rejects.values.tolist() == [[1, "year", "bad"]]


@pytest.mark.parametrize("kind", [ARROW_STREAM, PARQUET])
def test_a_chunk_goes_with_its_types_and_mixed_json_columns_as_text(kind: str) -> None:
    chunk = pd.DataFrame({
        "id": ["a", "b", "c"],
        "year": pd.Series([2007, "someday", None], dtype=object),  # JSON Lines mixes types
        "flag": pd.Series([True, 1.5, None], dtype=object),
        "mass": [3750.0, np.nan, 4100.5],
        "when": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
    })
    body = encode_table(chunk_table(chunk), kind, BODY_PARQUET_COMPRESSION)
    table = (pa.ipc.open_stream(body).read_all() if kind == ARROW_STREAM
             else pq.read_table(io.BytesIO(body)))
    assert table.column_names == ["id", "year", "flag", "mass", "when"]
    assert table.column("year").to_pylist() == ["2007", "someday", None]
    assert table.column("flag").to_pylist() == ["true", "1.5", None]
    assert table.column("mass").type == pa.float64()
    assert table.column("mass").to_pylist()[1] is None  # NaN travels as null
    assert pa.types.is_timestamp(table.column("when").type)


@pytest.mark.parametrize("kind", [ARROW_STREAM, "application/json"])
def test_an_answer_from_another_model_is_refused_before_its_columns(kind: str) -> None:
    if kind == ARROW_STREAM:  # another model's table need not have this run's columns
        answer = response(pa.table({"prediction": [1.5], "error": pa.array([None], pa.string())}),
                          ARROW_STREAM, "tiny-mass:new")
    else:
        answer = httpx.Response(200, json={"predictions": [1.5], "probabilities": None,
                                           "errors": [], "model": {"tag": "tiny-mass:new"}})
    with pytest.raises(BatchError) as caught:
        read_answer(answer, 1, CLASSES, model="tiny:abc")
    assert "tiny-mass:new" in str(caught.value) and "--restart" in str(caught.value)
