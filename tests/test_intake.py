"""The intake in-process: every bound is checked before decoding, and no input escapes as
anything but an ApiError (a property test over mutated bodies of every media type)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet  # noqa: F401 - pa.parquet
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agbento.core.errors import ApiError
from agbento.http.intake import PredictionIntake, read_prediction_body
from agbento.models.store import ModelCard
from agbento.rows.bounds import TableBounds
from agbento.rows.schema import Feature, FeatureSchema, LabelInfo
from agbento.runtime.contract import PredictionContract
from tests import hostile

JSON = "application/json"
CSV = "text/csv"
PARQUET = hostile.PARQUET
ARROW = hostile.ARROW
MAX_ROWS = 50
MAX_BODY_BYTES = 200_000

SCHEMA = FeatureSchema(
    features=(
        Feature("island", "categorical", nullable=False, categories=("Biscoe", "Dream")),
        Feature("bill_length_mm", "numeric", nullable=True, minimum=30.0, maximum=60.0),
        Feature("year", "numeric", nullable=False, integer=True, minimum=2007, maximum=2009),
        Feature("member", "boolean", nullable=True),
        Feature("seen", "datetime", nullable=True),
        Feature("note", "text", nullable=True),
    ),
    label=LabelInfo("species", "multiclass", ("Adelie", "Gentoo")),
)
CARD = ModelCard(
    tag="props:1", labels={}, path=Path("."),
    metadata={"schema": SCHEMA.to_dict(), "problem_type": "multiclass"},
)
BOUNDS = TableBounds.for_service(MAX_ROWS, MAX_BODY_BYTES, None, SCHEMA.names)
GOOD = {"island": "Dream", "bill_length_mm": 41.5, "year": 2008, "member": True,
        "seen": "2008-01-02", "note": "a quiet bird"}


def refused(content_type: str, body: bytes, bounds: TableBounds = BOUNDS) -> ApiError:
    with pytest.raises(ApiError) as caught:
        read_prediction_body(content_type, body, bounds)
    return caught.value


# -- each bound, each media type ----------------------------------------------------------

def test_the_three_reported_attacks_are_4xx_naming_the_bound() -> None:
    parquet = refused(PARQUET, hostile.parquet_of_rows(20_000_000))
    assert (parquet.status, parquet.code) == (413, "too_many_rows")
    number = refused(JSON, hostile.json_number(50_000))
    assert (number.status, number.code) == (400, "number_too_long")
    assert "50000 characters" in number.message
    name = refused(JSON, hostile.json_field_name(1 << 20))
    assert (name.status, name.code) == (400, "field_name_too_long")
    assert "1048576 characters" in name.message and len(name.message) < 300


def test_number_literals_up_to_the_bound_parse() -> None:
    body = read_prediction_body(JSON, hostile.json_number(BOUNDS.max_number_chars), BOUNDS)
    assert body.records[0]["year"] == int("9" * BOUNDS.max_number_chars)
    longer = b'{"data": [{"year": 0.' + b"5" * BOUNDS.max_number_chars + b"}]}"
    assert refused(JSON, longer).code == "number_too_long"
    digits_in_a_string = json.dumps({"data": [{"note": "1" * 5_000, "year": 2008}]}).encode()
    assert read_prediction_body(JSON, digits_in_a_string, BOUNDS).records[0]["year"] == 2008


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        (JSON, hostile.json_keys_per_row(1_001), 413, "too_many_columns"),
        (JSON, hostile.json_empty_rows(MAX_BODY_BYTES), 413, "too_many_values"),
        (JSON, hostile.json_empty_lists(MAX_BODY_BYTES), 413, "too_many_values"),
        (JSON, hostile.json_short_strings(MAX_BODY_BYTES), 413, "too_many_values"),
        (JSON, b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json"),
        (JSON, json.dumps({"dataframe_split": {"columns": ["k" * 300], "data": [[1]]}}).encode(),
         400, "field_name_too_long"),
        (JSON, json.dumps({"dataframe_split": {"columns": [f"c{i}" for i in range(1_001)],
                                               "data": []}}).encode(), 413, "too_many_columns"),
        (JSON, json.dumps({"dataframe_split": {"columns": ["island"],
                                               "data": [["Dream"]] * 51}}).encode(),
         413, "too_many_rows"),
        (CSV, hostile.csv_of_rows(MAX_ROWS + 1), 413, "too_many_rows"),
        (CSV, hostile.csv_of_columns(1_001), 413, "too_many_columns"),
        (CSV, hostile.csv_long_line(BOUNDS.max_line_chars), 400, "line_too_long"),
        (CSV, b'island,note\n' + b'"x\n",' * 300_000 + b'\n', 400, "line_too_long"),
        (CSV, hostile.csv_field_name(300), 400, "field_name_too_long"),
        (CSV, b"island,island\nDream,Dream\n", 400, "invalid_csv"),
        (CSV, b"island\nDream,2008\n", 400, "invalid_csv"),
        (CSV, b"island,year\n\xff\xfe,1\n", 400, "invalid_csv"),
        (PARQUET, hostile.parquet_of_rows(MAX_ROWS + 1), 413, "too_many_rows"),
        (PARQUET, hostile.parquet_of_columns(1_001), 413, "too_many_columns"),
        (PARQUET, hostile.parquet_with_column_name("k" * 300), 400, "field_name_too_long"),
        (PARQUET, hostile.parquet_of_long_strings(MAX_ROWS, 100_000), 413, "decoded_too_large"),
        (PARQUET, hostile.parquet_of_lists(2, 10), 400, "invalid_parquet"),
        (PARQUET, hostile.parquet_bytes(pa.table({"island": ["x" * 500_000]})), 413,
         "decoded_too_large"),
        (PARQUET, b"PAR1" + b"\0" * 100 + b"PAR1", 400, "invalid_parquet"),
        (ARROW, hostile.arrow_of_rows(MAX_ROWS + 1), 413, "too_many_rows"),
        (ARROW, hostile.arrow_bytes(pa.table({f"c{i}": [0] for i in range(1_001)})), 413,
         "too_many_columns"),
        (ARROW, hostile.arrow_bytes(pa.table({"k" * 300: [1]})), 400, "field_name_too_long"),
        (ARROW, hostile.arrow_of_long_strings(MAX_ROWS, 100_000), 413, "decoded_too_large"),
        (ARROW, hostile.arrow_of_compressed_zeros(10), 400, "invalid_arrow"),
        (ARROW, hostile.arrow_bytes(pa.table({"year": pa.array([[1, 2]])})), 400,
         "invalid_arrow"),
        (ARROW, hostile.arrow_bytes(pa.Table.from_arrays([pa.array([1]), pa.array([2])],
                                                         names=["year", "year"])),
         400, "invalid_arrow"),
        (ARROW, b"\xff\xff\xff\xff" + b"\0" * 100, 400, "invalid_arrow"),
        (ARROW, hostile.arrow_bytes(pa.table({"year": pa.array([], pa.int64())})), 400,
         "empty_data"),
        (PARQUET, hostile.parquet_bytes(pa.Table.from_arrays([pa.array([1]), pa.array([2])],
                                                             names=["year", "year"])),
         400, "invalid_parquet"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 30 else None,
)
def test_bounds_refuse_before_decoding(
    content_type: str, body: bytes, status: int, code: str
) -> None:
    error = refused(content_type, body)
    assert (error.status, error.code) == (status, code), error.message


def test_parquet_is_read_row_group_by_row_group_under_the_bound() -> None:
    rows = [{**GOOD, "year": 2000 + i} for i in range(MAX_ROWS)]
    table = pa.Table.from_pylist(rows)
    body = read_prediction_body(PARQUET, hostile.parquet_bytes(table, row_group_size=7), BOUNDS)
    assert body.records == rows


@pytest.mark.parametrize(("groups", "status", "code"), [  # after / while the footer decodes
    (MAX_ROWS + 1, 400, "invalid_parquet"), (5_000, 413, "too_many_columns"),
])
def test_parquet_row_groups_are_bounded(groups: int, status: int, code: str) -> None:
    empty_groups = io.BytesIO()
    table = pa.table({"year": pa.array([], pa.int64())})
    with pa.parquet.ParquetWriter(empty_groups, table.schema) as writer:
        for _ in range(groups):
            writer.write_table(table)
    error = refused(PARQUET, empty_groups.getvalue())
    assert (error.status, error.code) == (status, code), error.message


def test_wide_models_widen_the_column_and_name_bounds() -> None:
    names = [f"feature number {i} " + "x" * 300 for i in range(1_500)]
    bounds = TableBounds.for_service(10, 1_000_000, None, names)
    assert bounds.max_columns >= 1_500 and bounds.max_name_chars >= len(names[0])
    assert bounds.max_cells >= 10 * 1_500


@pytest.mark.parametrize("text", [
    "island,year,sex\nDream,2008,\nBiscoe,NA,male\n\n,,\n",
    '\ufeffisland,note\r\n"Dream","two\nlines, a comma"\r\nBiscoe,null\r\n',
    "island,,year\nDream,x,2008\nBiscoe\n",
    'a,b\n"1",N/A\n#N/A,"nan"\n',
])
def test_csv_reads_as_pandas_did(text: str) -> None:
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=True)
    expected = [{k: v for k, v in row.items() if isinstance(v, str)}
                for row in frame.to_dict("records")]
    assert read_prediction_body(CSV, text.encode(), BOUNDS).records == expected


def test_parquet_values_read_as_pandas_did() -> None:
    frame = pd.DataFrame({
        "island": ["Dream", None], "year": [2008, 2009], "bill_length_mm": [41.5, float("nan")],
        "seen": pd.to_datetime(["2008-01-02 00:00:00", "2009-03-04 05:06:07"]),
        "member": [True, False], "kind": pd.Categorical(["a", "b"]),
    })
    records = read_prediction_body(PARQUET, frame.to_parquet(), BOUNDS).records
    assert records == [
        {"island": "Dream", "year": 2008, "bill_length_mm": 41.5, "seen": "2008-01-02T00:00:00",
         "member": True, "kind": "a"},
        {"island": None, "year": 2009, "bill_length_mm": None, "seen": "2009-03-04T05:06:07",
         "member": False, "kind": "b"},
    ]
    indexed = frame.set_index("island").to_parquet()  # pandas' index is not a field
    assert "island" not in read_prediction_body(PARQUET, indexed, BOUNDS).records[0]


# -- no exception but ApiError, whatever the body -------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20), st.sampled_from(["Dream", "2008", "NA", "2008-01-02", "yes"]),
)
field_names = st.one_of(st.sampled_from(SCHEMA.names), st.text(max_size=8))
rows = st.lists(st.dictionaries(field_names, scalars, max_size=8), min_size=0, max_size=8)


def encode(form: str, records: list[dict[str, Any]]) -> tuple[str, bytes]:
    columns = sorted({name for row in records for name in row})
    if form == "data":
        return JSON, json.dumps({"data": records}).encode()
    if form == "dataframe_records":
        return JSON, json.dumps({"dataframe_records": records, "on_error": "skip"}).encode()
    if form == "dataframe_split":
        data = [[row.get(c) for c in columns] for row in records]
        return JSON, json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()
    frame = pd.DataFrame.from_records(records, columns=columns).astype(str)
    if form == "csv":
        return CSV, frame.to_csv(index=False).encode()
    return PARQUET, frame.to_parquet(index=False)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    form = draw(st.sampled_from(["data", "dataframe_records", "dataframe_split", "csv",
                                 "parquet"]))
    content_type, body = encode(form, draw(rows))
    for _ in range(draw(st.integers(0, 4))):
        if not body:
            break
        at = draw(st.integers(0, len(body) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "truncate"]))
        if action == "flip":
            body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1:]
        elif action == "insert":
            body = body[:at] + draw(st.sampled_from(
                [b"9" * 1_200, b"9" * 5_000, b"[" * 1_100, b'"' + b"k" * 300 + b'":1,',
                 b"\\ud800", b"\x00", b"\n", b",", b'"', b"{}", b"1e999", b"-", b"\xff"]
            )) + body[at:]
        elif action == "delete":
            body = body[:at] + body[at + draw(st.integers(1, 16)):]
        elif action == "repeat":
            body = body[:at] + body[at:at + 64] * draw(st.integers(2, 40)) + body[at:]
        else:
            body = body[:at]
    return content_type, body


def through_contract(content_type: str, body: bytes) -> None:
    """What one request goes through in-process: intake, the JSON BentoML reads, contract."""
    contract = PredictionContract(CARD, MAX_ROWS)
    try:
        parsed = read_prediction_body(content_type, body, BOUNDS)
        document = json.loads(parsed.to_json())
        contract.accept(document["data"], document.get("on_error", "fail"))
    except ApiError as error:
        assert 400 <= error.status < 500, error


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_no_body_raises_anything_but_api_error(case: tuple[str, bytes]) -> None:
    through_contract(*case)


async def _downstream(scope: Any, receive: Any, send: Any) -> None:
    """Stands where BentoML is: reads the canonical JSON and runs the contract on it."""
    message = await receive()
    document = json.loads(message["body"])
    try:
        on_error = document.get("on_error", "fail")
        PredictionContract(CARD, MAX_ROWS).accept(document["data"], on_error)
        status = 200
    except ApiError as error:
        status = error.status
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def call_middleware(content_type: str, body: bytes, query: bytes = b"") -> int:
    intake = PredictionIntake(_downstream, MAX_BODY_BYTES, MAX_ROWS,
                              feature_names=SCHEMA.names)
    scope = {"type": "http", "method": "POST", "path": "/predict", "query_string": query,
             "headers": [(b"content-type", content_type.encode()),
                         (b"content-length", str(len(body)).encode())]}
    sent: list[dict[str, Any]] = []
    chunks = [body[i:i + 65_536] for i in range(0, len(body), 65_536)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(intake(scope, receive, send))
    return int(sent[0]["status"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.sampled_from([b"", b"on_error=skip", b"on_error=bogus"]))
def test_the_middleware_answers_every_body_below_500(
    case: tuple[str, bytes], query: bytes
) -> None:
    status = call_middleware(*case, query=query)
    assert status == 200 or 400 <= status < 500


def test_the_middleware_answers_the_reported_attacks_4xx() -> None:
    for content_type, body in [(PARQUET, hostile.parquet_of_rows(20_000_000)),
                               (JSON, hostile.json_number(50_000)),
                               (JSON, hostile.json_field_name(100_000))]:
        assert 400 <= call_middleware(content_type, body) < 500


# -- orjson for large bodies: the same document as json with the hooks, or json decides ------

json_cells = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**25, max_value=10**25),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
    st.sampled_from(['a"b', "10:00", "k" * 300, "\\", "\ud800"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                          max_size=2),
)
json_rows = st.lists(st.dictionaries(st.sampled_from(["year", "island", "k" * 300, "a:b"]),
                                     json_cells, max_size=4), max_size=30)


@settings(max_examples=300, deadline=None)
@given(rows=json_rows, duplicate=st.booleans(), filler=st.integers(0, 5_000))
def test_fast_json_parse_is_json_or_declines(rows: list[dict[str, Any]], duplicate: bool,
                                             filler: int) -> None:
    from agbento.http.intake import _NOT_FAST, _BoundedJson, _parse_fast

    text = json.dumps({"data": rows, "on_error": "skip" + " " * filler})
    if duplicate and rows and rows[0]:
        text = text.replace('{"data": [{', '{"data": [{"year": 1, ', 1)
    raw = text.encode()
    try:
        expected: Any = json.loads(raw, object_pairs_hook=_BoundedJson(BOUNDS).object)
    except ApiError:
        expected = None
    fast = _parse_fast(raw, BOUNDS)
    if fast is not _NOT_FAST:
        assert expected is not None
        assert fast == expected
        assert [[type(v) for v in r.values()] for r in fast["data"]] == [
            [type(v) for v in r.values()] for r in expected["data"]]


csv_cells = st.one_of(st.sampled_from(["", "NA", "null", "Dream", "2008", " 1 ", '"q"', "a,b",
                                       "two\nlines", "x\r\ny", "\ufeff", "é"]),
                      st.text(alphabet='ab,"\n\r 1', max_size=4))


@settings(max_examples=300, deadline=None)
@given(header=st.lists(st.sampled_from(["island", "year", "", "sex", "a b"]), min_size=1,
                       max_size=4),
       cells=st.lists(st.lists(csv_cells, min_size=0, max_size=5), max_size=6),
       raw_text=st.booleans())
def test_csv_columns_read_as_the_streaming_reader(header: list[str], cells: list[list[str]],
                                                  raw_text: bool) -> None:
    """The C reader (pyarrow) either declines or reads what the csv module reads."""
    import csv as csv_module

    from agbento.http.intake import records_from_csv
    from agbento.rows.columns import RequestTable, read_csv_columns

    out = io.StringIO()
    if raw_text:  # unquoted, as many files are
        out.write(",".join(header) + "\n" + "\n".join(",".join(r) for r in cells) + "\n")
    else:
        writer = csv_module.writer(out)
        writer.writerow(header)
        writer.writerows(cells)
    raw = out.getvalue().encode()
    try:
        expected: Any = records_from_csv(raw, BOUNDS)
    except ApiError as error:
        expected = error.code
    columns = read_csv_columns(raw, BOUNDS)
    if columns is None:
        return
    assert RequestTable(columns, len(columns)).records() == expected


def test_a_parquet_string_column_that_is_not_utf8_is_a_400_naming_it() -> None:
    """Parquet's reader does not check a string column's bytes (Arrow's stream reader does):
    pyarrow's conversion to pandas fails later, and that failure is the body's, not ours."""
    island = pa.array([b"Biscoe", b"\xff\xfe"], pa.binary()).view(pa.string())
    buffer = io.BytesIO()
    pa.parquet.write_table(pa.table({"island": island, "year": pa.array([2008, 2009])}),
                           buffer)
    with pytest.raises(ApiError) as raised:
        read_prediction_body(PARQUET, buffer.getvalue(), BOUNDS)
    assert raised.value.code == "invalid_parquet" and "'island'" in raised.value.message
