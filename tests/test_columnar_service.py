"""The columnar path over real HTTP: JSON, CSV, Parquet and Arrow bodies of the same rows get
the same answers, as JSON or as Arrow/Parquet tables, and bad cells name row and field."""

from __future__ import annotations

import io
import json

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agbento.training.pipeline import demo_table
from tests.servers import BentoServer
from tests.tiny_models import TinyModels

pytestmark = pytest.mark.integration

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
ROWS = 300  # above AGBENTO_CACHE_MAX_ROWS: the columnar path


def penguins(n: int, label: str = "species") -> pd.DataFrame:
    table = demo_table().dropna().drop(columns=label)
    return table.sample(n=n, replace=True, random_state=3).reset_index(drop=True)


def arrow_bytes(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def bodies(frame: pd.DataFrame) -> dict[str, tuple[str, bytes]]:
    rows = [{k: v for k, v in rec.items()} for rec in json.loads(frame.to_json(orient="records"))]
    return {
        "json": ("application/json", json.dumps({"data": rows}).encode()),
        "csv": ("text/csv", frame.to_csv(index=False).encode()),
        "parquet": (PARQUET, frame.to_parquet(index=False)),
        "arrow": (ARROW, arrow_bytes(frame)),
    }


def post(server: BentoServer, body: tuple[str, bytes], query: str = "",
         accept: str | None = None) -> httpx.Response:
    headers = {"content-type": body[0], **({"accept": accept} if accept else {})}
    return httpx.post(f"{server.url}/predict{query}", content=body[1], headers=headers,
                      timeout=60)


def read_table(response: httpx.Response) -> pd.DataFrame:
    if response.headers["content-type"].startswith(PARQUET):
        return pq.read_table(io.BytesIO(response.content)).to_pandas()
    return pa.ipc.open_stream(response.content).read_all().to_pandas()


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "text"])
def test_every_format_answers_as_json_rows_do(multiclass_server: BentoServer,
                                              typed: bool) -> None:
    frame = penguins(ROWS)
    if not typed:  # every cell text, a bad number among them: skipped in place
        frame = frame.astype(str)
        frame.loc[7, "bill_length_mm"] = "not a number"
        frame.loc[9, "year"] = "20x8"
    answers = {}
    for name, body in bodies(frame).items():
        response = post(multiclass_server, body, "?on_error=skip")
        assert response.status_code == 200, (name, response.text)
        answers[name] = response.json()
    small = bodies(frame.head(3))["json"]  # the row path
    row_path = post(multiclass_server, small).json()
    reference = answers["json"]
    assert reference["predictions"][:3] == row_path["predictions"]
    assert reference["probabilities"][:3] == row_path["probabilities"]
    for name, body in answers.items():
        assert body["predictions"] == reference["predictions"], name
        assert body["probabilities"] == reference["probabilities"], name
        assert body["errors"] == reference["errors"], name
        assert body["input_drift"] == reference["input_drift"], name
    if not typed:
        assert [(e["row"], e["field"]) for e in reference["errors"]] == [
            (7, "bill_length_mm"), (9, "year")]
        assert reference["predictions"][7] is None and reference["predictions"][9] is None


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet", "arrow"])
def test_bad_cells_are_422_by_row_and_field_in_every_format(
    multiclass_server: BentoServer, fmt: str
) -> None:
    frame = penguins(ROWS).astype(str)
    frame.loc[150, "flipper_length_mm"] = "long"
    frame.loc[299, "body_mass_g"] = "1e999"
    response = post(multiclass_server, bodies(frame)[fmt], accept=ARROW)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")  # errors: JSON
    details = response.json()["error"]["details"]
    assert [(d["row"], d["field"], d["problem"]) for d in details] == [
        (150, "flipper_length_mm", "expected a number, got the string 'long'"),
        (299, "body_mass_g", "number must be finite"),
    ]


@pytest.mark.parametrize("accept", [ARROW, PARQUET])
@pytest.mark.parametrize("rows", [2, ROWS])
def test_table_answers_match_json_answers(multiclass_server: BentoServer,
                                          tiny_models: TinyModels, accept: str,
                                          rows: int) -> None:
    frame = penguins(rows).astype(str)
    frame.loc[1, "year"] = "never"
    body = bodies(frame)["parquet"]
    expected = post(multiclass_server, body, "?on_error=skip").json()
    response = post(multiclass_server, body, "?on_error=skip", accept=accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == accept
    assert response.headers["x-agbento-model"] == tiny_models.multiclass.tag
    assert response.headers["x-request-id"]
    table = read_table(response)
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    assert list(table.columns) == ["prediction", *[f"proba_{c}" for c in classes], "error"]
    predictions = [None if pd.isna(p) else p for p in table["prediction"]]
    assert predictions == expected["predictions"]
    for i, proba in enumerate(expected["probabilities"]):
        got = [table[f"proba_{c}"][i] for c in classes]
        if proba is None:
            assert all(pd.isna(g) for g in got)
        else:
            assert got == [proba[c] for c in classes]
    errors = [None if pd.isna(e) else e for e in table["error"]]
    assert [(e["row"], e["field"]) for e in expected["errors"]] == [(1, "year")]
    assert [json.loads(e) if e else None for e in errors] == [
        [{"field": "year", "problem": expected["errors"][0]["problem"]}] if i == 1 else None
        for i in range(rows)]


def test_regression_table_answer(regression_server: BentoServer) -> None:
    frame = penguins(ROWS, label="body_mass_g")
    response = post(regression_server, bodies(frame)["arrow"], accept=ARROW)
    assert response.status_code == 200, response.text
    table = read_table(response)
    assert list(table.columns) == ["prediction", "error"]
    expected = post(regression_server, bodies(frame)["json"]).json()["predictions"]
    assert table["prediction"].tolist() == pytest.approx(expected, rel=1e-12)
    assert table["error"].isna().all()


def test_compressed_arrow_stream_is_refused(multiclass_server: BentoServer) -> None:
    table = pa.Table.from_pandas(penguins(5), preserve_index=False)
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    response = post(multiclass_server, (ARROW, sink.getvalue().to_pybytes()))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_arrow"


