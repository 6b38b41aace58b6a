"""Every bad input a client can send gets a clear 4xx in our error shape, never a 5xx."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest

from tests import hostile
from tests.conftest import MAX_BODY_BYTES, MAX_ROWS
from tests.helpers import GOOD
from tests.servers import BentoServer

pytestmark = pytest.mark.integration

JSON = "application/json"


def rows(*items: Any) -> bytes:
    return json.dumps({"data": list(items)}).encode()


def row_with(**changes: Any) -> bytes:
    return rows({**GOOD, **changes})


# (case, content type, body, status, error code, (row, field) that must be named or None)
CASES: list[tuple[str, str, bytes, int, str, tuple[int, str | None] | None]] = [
    ("empty body", JSON, b"", 400, "invalid_json", None),
    ("whitespace body", JSON, b"  \n ", 400, "invalid_json", None),
    ("not json", JSON, b"hello", 400, "invalid_json", None),
    ("truncated json", JSON, b'{"data": [', 400, "invalid_json", None),
    ("trailing comma", JSON, b'{"data": [],}', 400, "invalid_json", None),
    ("single quotes", JSON, b"{'data': []}", 400, "invalid_json", None),
    ("NaN literal", JSON, b'{"data": [{"year": NaN}]}', 400, "invalid_json", None),
    ("Infinity literal", JSON, b'{"data": [{"year": Infinity}]}', 400, "invalid_json", None),
    ("-Infinity literal", JSON, b'{"data": [{"year": -Infinity}]}', 400, "invalid_json", None),
    ("invalid utf-8", JSON, b'{"data": [{"island": "\xff\xfe"}]}', 400, "invalid_json", None),
    ("lone surrogate", JSON, b'{"data": [{"island": "\\ud800"}]}', 400, "invalid_json", None),
    ("deep nesting", JSON, b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json", None),
    ("duplicate row key", JSON, b'{"data": [{"year": 1, "year": 2}]}', 400, "invalid_json",
     None),
    ("duplicate top key", JSON, b'{"data": [], "data": []}', 400, "invalid_json", None),
    ("top-level list", JSON, json.dumps([GOOD]).encode(), 400, "bad_request", None),
    ("top-level string", JSON, b'"rows"', 400, "bad_request", None),
    ("top-level number", JSON, b"42", 400, "bad_request", None),
    ("top-level null", JSON, b"null", 400, "bad_request", None),
    ("empty object", JSON, b"{}", 400, "bad_request", None),
    ("unknown top-level key", JSON, json.dumps({"rows": [GOOD]}).encode(), 400, "bad_request",
     None),
    ("data is an object", JSON, json.dumps({"data": GOOD}).encode(), 400, "bad_request", None),
    ("data is a string", JSON, b'{"data": "a row"}', 400, "bad_request", None),
    ("data is null", JSON, b'{"data": null}', 400, "bad_request", None),
    ("empty data", JSON, b'{"data": []}', 400, "empty_data", None),
    ("two row keys", JSON, json.dumps({"data": [GOOD], "dataframe_records": [GOOD]}).encode(),
     400, "bad_request", None),
    ("bad on_error", JSON, json.dumps({"data": [GOOD], "on_error": "ignore"}).encode(), 400,
     "bad_request", None),
    ("on_error not a string", JSON, json.dumps({"data": [GOOD], "on_error": 1}).encode(), 400,
     "bad_request", None),
    ("split not an object", JSON, b'{"dataframe_split": [[1]]}', 400, "bad_request", None),
    ("split columns not strings", JSON,
     b'{"dataframe_split": {"columns": [1, 2], "data": [[1, 2]]}}', 400, "bad_request", None),
    ("split row of wrong length", JSON,
     b'{"dataframe_split": {"columns": ["island", "year"], "data": [["Dream"]]}}', 400,
     "bad_request", None),
    ("row is a list", JSON, rows([1, 2, 3]), 422, "invalid_rows", (0, None)),
    ("row is null", JSON, rows(None), 422, "invalid_rows", (0, None)),
    ("row is a string", JSON, rows("Biscoe"), 422, "invalid_rows", (0, None)),
    ("second row bad", JSON, rows(GOOD, {**GOOD, "year": "soon"}), 422, "invalid_rows",
     (1, "year")),
    ("missing required feature", JSON, rows({k: v for k, v in GOOD.items() if k != "year"}),
     422, "invalid_rows", (0, "year")),
    ("string for a number", JSON, row_with(bill_length_mm="long"), 422, "invalid_rows",
     (0, "bill_length_mm")),
    ("boolean for a number", JSON, row_with(body_mass_g=True), 422, "invalid_rows",
     (0, "body_mass_g")),
    ("list for a scalar", JSON, row_with(bill_depth_mm=[14.5]), 422, "invalid_rows",
     (0, "bill_depth_mm")),
    ("object for a scalar", JSON, row_with(island={"name": "Biscoe"}), 422, "invalid_rows",
     (0, "island")),
    ("float for a category", JSON, row_with(island=1.5), 422, "invalid_rows", (0, "island")),
    ("null where never missing", JSON, row_with(year=None), 422, "invalid_rows", (0, "year")),
    ("number overflowing to inf", JSON, b'{"data": [{"island": "Dream", "year": 1e400}]}', 422,
     "invalid_rows", (0, "year")),
    ("huge integer", JSON, row_with(year=10**400), 422, "invalid_rows", (0, "year")),
    ("NaN as a string", JSON, row_with(flipper_length_mm="NaN"), 422, "invalid_rows",
     (0, "flipper_length_mm")),
    ("very long string", JSON, row_with(island="x" * 20_000), 422, "invalid_rows",
     (0, "island")),
    ("too many rows", JSON, rows(*[{}] * (10 * MAX_ROWS)), 413, "too_many_rows", None),
    ("body too large", JSON, rows(GOOD, {"pad": "x" * MAX_BODY_BYTES}), 413, "body_too_large",
     None),
    ("text/plain", "text/plain", rows(GOOD), 415, "unsupported_media_type", None),
    ("xml", "application/xml", b"<data/>", 415, "unsupported_media_type", None),
    ("form", "application/x-www-form-urlencoded", b"data=1", 415, "unsupported_media_type",
     None),
    ("empty csv", "text/csv", b"", 400, "invalid_csv", None),
    ("csv missing a required column", "text/csv", b"island,sex\nDream,male\n", 422,
     "invalid_rows", (0, "year")),
    ("csv bad number", "text/csv", b"island,year\nDream,later\n", 422, "invalid_rows",
     (0, "year")),
    ("garbage parquet", "application/vnd.apache.parquet", b"PAR1 not really", 400,
     "invalid_parquet", None),
    # issue 12: small bodies that decode to a lot, refused before they are decoded
    ("parquet of 20M rows", hostile.PARQUET, hostile.parquet_of_rows(20_000_000), 413,
     "too_many_rows", None),
    ("json number of 50,000 digits", JSON, hostile.json_number(50_000), 400, "number_too_long",
     None),
    ("json float of 5,000 digits", JSON, b'{"data": [{"year": 0.' + b"1" * 5_000 + b"}]}", 400,
     "number_too_long", None),
    ("field name of 900 KB", JSON, hostile.json_field_name(900_000), 400,
     "field_name_too_long", None),
    ("2,000 keys in a row", JSON, hostile.json_keys_per_row(2_000), 413, "too_many_columns",
     None),
    ("330,000 empty rows", JSON, hostile.json_empty_rows(MAX_BODY_BYTES - 100), 413,
     "too_many_values", None),
    ("330,000 empty split rows", JSON, hostile.json_empty_lists(MAX_BODY_BYTES - 100), 413,
     "too_many_values", None),
    ("split column name too long", JSON,
     json.dumps({"dataframe_split": {"columns": ["k" * 1_000], "data": [[1]]}}).encode(), 400,
     "field_name_too_long", None),
    ("csv of too many rows", "text/csv", hostile.csv_of_rows(50_000), 413, "too_many_rows",
     None),
    ("csv of 5,000 columns", "text/csv", hostile.csv_of_columns(5_000), 413,
     "too_many_columns", None),
    ("csv header name too long", "text/csv", hostile.csv_field_name(1_000), 400,
     "field_name_too_long", None),
    ("csv row wider than its header", "text/csv", b"island\nDream," + b"1," * 400_000 + b"\n",
     400, "invalid_csv", None),
    ("parquet of long repeated strings", hostile.PARQUET,
     hostile.parquet_of_long_strings(MAX_ROWS, 100_000), 413, "decoded_too_large", None),
    ("parquet of 1,500 columns", hostile.PARQUET, hostile.parquet_of_columns(1_500), 413,
     "too_many_columns", None),
    ("parquet column name too long", hostile.PARQUET,
     hostile.parquet_with_column_name("k" * 1_000), 400, "field_name_too_long", None),
    ("parquet nested column", hostile.PARQUET, hostile.parquet_of_lists(10, 1_000), 400,
     "invalid_parquet", None),
]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code", "named"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input(
    multiclass_server: BentoServer,
    content_type: str,
    body: bytes,
    status: int,
    code: str,
    named: tuple[int, str | None] | None,
) -> None:
    for path in ("/predict", "/predict_proba"):
        response = httpx.post(
            f"{multiclass_server.url}{path}",
            content=body,
            headers={"content-type": content_type, "x-request-id": "bad-input-1"},
            timeout=60,
        )
        assert response.status_code == status, response.text[:500]
        answer = response.json()
        assert set(answer) == {"error", "request_id"}
        assert answer["request_id"] == "bad-input-1"
        assert set(answer["error"]) == {"code", "message", "details"}
        assert answer["error"]["code"] == code
        assert answer["error"]["message"]
        if named is not None:
            found = {(d["row"], d["field"]) for d in answer["error"]["details"]}
            assert named in found, answer


def test_at_least_forty_distinct_cases() -> None:
    assert len({case[0] for case in CASES}) == len(CASES) >= 40


def test_gzip_bodies_are_refused_clearly(multiclass_server: BentoServer) -> None:
    response = httpx.post(
        f"{multiclass_server.url}/predict",
        content=gzip.compress(rows(GOOD)),
        headers={"content-type": JSON, "content-encoding": "gzip"},
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_error_details_are_capped_and_counted(multiclass_server: BentoServer) -> None:
    bad = [{"island": "Dream", "year": "x"}] * 500
    response = httpx.post(f"{multiclass_server.url}/predict", content=rows(*bad),
                          headers={"content-type": JSON})
    assert response.status_code == 422
    error = response.json()["error"]
    assert len(error["details"]) == 100
    assert "500 problem(s) in 500 of 500 row(s)" == error["message"]


def test_every_rejection_is_one_log_line_with_request_id(multiclass_server: BentoServer) -> None:
    for request_id, body in (("log-check-json", b"nope"), ("log-check-row", row_with(year="x"))):
        response = httpx.post(
            f"{multiclass_server.url}/predict",
            content=body,
            headers={"content-type": JSON, "x-request-id": request_id},
        )
        assert response.status_code in (400, 422)
        lines = multiclass_server.log_lines_with(request_id)
        assert len(lines) == 1, lines
        logged = json.loads(lines[0])
        assert logged["request_id"] == request_id
        assert logged["status"] == response.status_code
        assert logged["error"] == response.json()["error"]["code"]
        assert logged["reason"] == response.json()["error"]["message"][:300]
    assert "Traceback" not in multiclass_server.log()


def test_one_fields_bound_for_every_protocol(multiclass_server: BentoServer,
                                              tiny_models) -> None:
    """/predict refuses more fields per row than its bound (413 too_many_columns): so do the
    Open Inference Protocol V2 (one tensor per field) and KServe V1 (keys per instance)."""
    name = tiny_models.multiclass.tag.split(":")[0]
    many = 2_000
    v2 = {"inputs": [{"name": f"x{i}", "datatype": "FP64", "shape": [1], "data": [1.0]}
                     for i in range(many)]}
    v1 = {"instances": [{f"x{i}": 1.0 for i in range(many)}]}
    for path, body in ((f"/v2/models/{name}/infer", v2), (f"/v1/models/{name}:predict", v1)):
        answer = httpx.post(f"{multiclass_server.url}{path}", json=body, timeout=60)
        assert answer.status_code == 413, answer.text[:300]
        assert "more than the limit of 1000" in answer.json()["error"], answer.text[:300]
    rows = httpx.post(f"{multiclass_server.url}/predict",
                      json={"data": [{f"x{i}": 1.0 for i in range(many)}]}, timeout=60)
    assert (rows.status_code, rows.json()["error"]["code"]) == (413, "too_many_columns")
