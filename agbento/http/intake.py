"""Prediction request bodies: read within limits, parsed, brought to one shape.

Clients send rows as `{"data": [...]}`, as MLflow serving's `{"dataframe_split": ...}` or
`{"dataframe_records": [...]}`, or as a CSV or Parquet body. `read_prediction_body` turns
any of them into `{"data": [records], "on_error": ...}` or raises an `ApiError` (400 not
JSON or wrong shape, 413 too large, 415 unsupported content type).

`PredictionIntake` is the ASGI middleware that applies it before BentoML parses the body:
BentoML's own parser then only ever sees canonical JSON, so every rejection has our error
shape, and an oversized body is refused before it is read into memory. What a body decodes
to is bounded too, before it is decoded (`agbento.rows.bounds`). On /explain the row limit
is AGBENTO_MAX_EXPLAIN_ROWS, and `top` and `class` (JSON body or query) are read and checked
here and handed on in the request's state (`agbento.rows.explain_options`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agbento.core.errors import ApiError, ErrorCode
from agbento.core.wire import ARROW_STREAM, PARQUET_TYPES, error_response, request_id_from
from agbento.http.routes import route_for
from agbento.rows.bounds import RowLimit, TableBounds, json_key_bytes
from agbento.rows.columns import (
    CSV_MISSING,
    STATE_KEY,
    RequestTable,
    frame_of,
    read_arrow_stream,
    read_csv_columns,
    read_parquet,
    table_from_records,
)
from agbento.rows.explain_options import KEYS as EXPLAIN_KEYS
from agbento.rows.explain_options import STATE_KEY as EXPLAIN_STATE_KEY
from agbento.rows.explain_options import ExplainOptions
from agbento.rows.schema import ON_ERROR_CHOICES, json_value

JSON_TYPES = frozenset({"application/json", "text/json"})
CSV_TYPES = frozenset({"text/csv", "application/csv"})
ARROW_TYPES = frozenset({ARROW_STREAM})
ROW_KEYS = ("data", "dataframe_records", "dataframe_split")
TOP_LEVEL_KEYS = frozenset({*ROW_KEYS, "on_error"})


class PredictionBody:
    """A request's rows: JSON records, or (files) a table decoded straight into columns."""

    def __init__(self, records: list[Any] | None = None, on_error: str = "fail",
                 raw: bytes | None = None, table: RequestTable | None = None,
                 options: dict[str, Any] | None = None) -> None:
        self._records = records
        self.on_error = on_error
        # the route's other top-level keys of a JSON body (/explain's `top`, `class`)
        self.options = options or {}
        # The client's own bytes, when they can go on to BentoML unchanged (see `canonical`).
        self.raw = raw
        self.table = table

    @property
    def records(self) -> list[Any]:
        if self._records is None:
            self._records = self.table.records() if self.table is not None else []
        return self._records

    @property
    def row_count(self) -> int:
        return self.table.total if self._records is None and self.table else len(self.records)

    def as_table(self) -> RequestTable:
        if self.table is None:
            self.table = table_from_records(self.records)
        return self.table

    def to_json(self) -> bytes:
        if self.raw is not None:
            return self.raw
        try:
            text = json.dumps(
                {"data": self.records, "on_error": self.on_error},
                ensure_ascii=False,
                # only inf from an overflowing literal (1e400) gets here: BentoML's parser
                # reads `Infinity` back as inf and the schema rejects it, naming row and field
                allow_nan=True,
                default=json_value,
            )
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(ErrorCode.INVALID_JSON, "the body holds invalid unicode") from None


def media_type(content_type: str | None) -> str:
    return (content_type or "application/json").split(";", 1)[0].strip().lower()


def read_prediction_body(
    content_type: str | None, raw: bytes, bounds: TableBounds, on_error: str | None = None,
    option_keys: frozenset[str] = frozenset(),
) -> PredictionBody:
    """Any supported body -> canonical records; `on_error` comes from the query for files.
    `option_keys`: top-level keys a JSON body may hold besides the rows (the route's)."""
    kind = media_type(content_type)
    if kind in JSON_TYPES or kind.endswith("+json"):
        document = parse_json(raw, bounds)
        body = body_from_json(document, bounds, option_keys)
        if on_error is not None:
            body.on_error = on_error
        if (canonical(document, raw) and not body.options
                and body.on_error == document.get("on_error", "fail")):
            body.raw = raw
    elif kind in CSV_TYPES:
        columns = read_csv_columns(raw, bounds)
        if columns is None:  # the streaming reader, bounded record by record
            body = PredictionBody(records_from_csv(raw, bounds), on_error or "fail")
        else:
            table = RequestTable(columns, len(columns))
            body = PredictionBody(None, on_error or "fail", table=table)
    elif kind in PARQUET_TYPES or kind in ARROW_TYPES:
        parquet = kind in PARQUET_TYPES
        read = read_parquet if parquet else read_arrow_stream
        columns = frame_of(read(raw, bounds),
                           ErrorCode.INVALID_PARQUET if parquet else ErrorCode.INVALID_ARROW)
        table = RequestTable(columns, len(columns))
        body = PredictionBody(None, on_error or "fail", table=table)
    else:
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"content type {kind!r} is not supported; send application/json, text/csv, "
            "application/vnd.apache.parquet or application/vnd.apache.arrow.stream",
        )
    if body.on_error not in ON_ERROR_CHOICES:
        raise ApiError(
            ErrorCode.BAD_REQUEST, f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}"
        )
    bounds.check_rows(body.row_count)
    return body


def _reject_constant(name: str) -> Any:
    raise ApiError(ErrorCode.INVALID_JSON, f"{name} is not valid JSON; send null or a number")


# Bytes a JSON value count looks at per step (numpy), so the count costs little memory.
_COUNT_CHUNK_BYTES = 1 << 20


def json_value_count(raw: bytes, limit: int) -> int:
    """At most how many values (scalars and containers) `raw` holds: a count, not a parse.

    Every value but the first follows a comma or opens a container, so commas + brackets
    + 1 bounds it. Those inside strings do not count: only when the quick count exceeds
    `limit` are they taken out, by quote parity (exact unless a string holds an escaped
    quote; then the quick count stands, an over-count).
    """
    count = raw.count(b",") + raw.count(b"[") + raw.count(b"{") + 1
    if count <= limit or b'\\"' in raw:
        return count
    return 1 + _count_outside_strings(raw, b",[{")


def _count_outside_strings(raw: bytes, targets: bytes) -> int:
    """How many bytes of `targets` stand outside JSON strings, by quote parity (exact unless
    a string holds an escaped quote), a numpy step of `_COUNT_CHUNK_BYTES` at a time."""
    import numpy as np

    data = np.frombuffer(raw, dtype=np.uint8)
    count, in_string = 0, 0
    for start in range(0, len(data), _COUNT_CHUNK_BYTES):
        chunk = data[start:start + _COUNT_CHUNK_BYTES]
        # uint8 wraps at 256, an even number: the running parity of quotes survives
        inside = (np.cumsum(chunk == 0x22, dtype=np.uint8) + in_string) & 1
        wanted = np.isin(chunk, np.frombuffer(targets, dtype=np.uint8))
        count += int(np.count_nonzero(wanted & (inside == 0)))
        in_string = int(inside[-1])
    return count


# Every byte a JSON number literal can hold becomes "0", every other byte " ".
_NUMBER_BYTES = bytes(
    0x30 if chr(b) in "0123456789+-.eE" else 0x20 for b in range(256)
)


def _may_hold_long_number(raw: bytes, limit: int) -> bool:
    """False when no run of number characters is longer than `limit`: no literal can be.

    A C-speed look at the bytes, so the per-number hooks (a Python call for each of
    thousands of numbers) run only for bodies that may need them.
    """
    return b"0" * (limit + 1) in raw.translate(_NUMBER_BYTES)


class _BoundedJson:
    """json.loads hooks that check names, field counts and number literals as they parse."""

    def __init__(self, bounds: TableBounds) -> None:
        self.bounds = bounds

    def object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        self.bounds.check_field_count(len(pairs), "a JSON object")
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ApiError(ErrorCode.INVALID_JSON, f"duplicate key {key!r} in a JSON object")
            self.bounds.check_name(key, "a JSON object")
            result[key] = value
        return result

    def integer(self, literal: str) -> int:
        self.bounds.check_number(literal)
        return int(literal)

    def real(self, literal: str) -> float:
        self.bounds.check_number(literal)
        return float(literal)


# Python's parser gives up at about this depth (the interpreter's recursion limit).
_TOO_DEEP = re.compile(rb"[\[{](?:\s*[\[{]){1000}")


def _too_deep() -> ApiError:
    return ApiError(ErrorCode.INVALID_JSON, "the JSON is nested too deeply")


def _nan_is_null(name: str) -> Any:
    return None if name == "NaN" else _reject_constant(name)


def parse_json(raw: bytes, bounds: TableBounds, nan_is_null: bool = False) -> Any:
    """JSON within `bounds`; `nan_is_null` reads a NaN literal as a missing value (tensor
    clients send NaN for pandas' missing values)."""
    if not raw.strip():
        raise ApiError(ErrorCode.INVALID_JSON, "the body is empty; send {\"data\": [rows]}")
    values = json_value_count(raw, bounds.max_cells)
    if values > bounds.max_cells:
        if _TOO_DEEP.search(raw):  # say what is wrong first: it would never parse
            raise _too_deep()
        bounds.check_cells(values, "JSON values")
    if not nan_is_null and len(raw) >= FAST_JSON_MIN_BYTES:
        document = _parse_fast(raw, bounds)
        if document is not _NOT_FAST:
            return document
    hooks = _BoundedJson(bounds)
    numbers: dict[str, Any] = {}
    if _may_hold_long_number(raw, bounds.max_number_chars):
        numbers = {"parse_int": hooks.integer, "parse_float": hooks.real}
    try:
        return json.loads(
            raw, object_pairs_hook=hooks.object,
            parse_constant=_nan_is_null if nan_is_null else _reject_constant, **numbers
        )
    except json.JSONDecodeError as exc:
        raise ApiError(
            ErrorCode.INVALID_JSON, f"not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise ApiError(ErrorCode.INVALID_JSON, "the body is not UTF-8 text") from None
    except RecursionError:
        raise _too_deep() from None


# From this size on a JSON body is parsed by orjson first (measured: below it the checks
# around orjson cost what it saves).
FAST_JSON_MIN_BYTES = 4096
_NOT_FAST = object()
# Every digit becomes "0", every other byte " ": a run of 20 digits is an integer orjson
# would read as a float (json reads an int), or a long fraction; either way json decides.
_DIGITS = bytes(0x30 if chr(b).isdigit() and b < 128 else 0x20 for b in range(256))


def _parse_fast(raw: bytes, bounds: TableBounds) -> Any:
    """orjson's parse, when it is surely what json with `_BoundedJson`'s hooks would give;
    else `_NOT_FAST` (then json parses, and words any error as always).

    orjson keeps the last of duplicate keys and checks no names or field counts, so the keys
    it returns are counted against the colons outside strings: equal means no duplicate and
    no object deeper than the rows (which are then checked here as the hooks would).
    """
    import orjson

    if b"0" * 20 in raw.translate(_DIGITS) or b'\\"' in raw:
        return _NOT_FAST
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_FAST
    if type(document) is not dict:
        return _NOT_FAST
    keys, widest, names = len(document), len(document), set(document)
    for value in document.values():
        if type(value) is dict:
            keys += len(value)
            widest = max(widest, len(value))
            names.update(value)
        elif type(value) is list:  # the rows: each step below iterates in C
            rows = [row for row in value if type(row) is dict]
            sizes = list(map(len, rows))
            keys += sum(sizes)
            widest = max(widest, max(sizes, default=0))
            names = names.union(*rows)
    if (widest > bounds.max_columns or keys != _colons_outside_strings(raw)
            or any(len(name) > bounds.max_name_chars for name in names)):
        return _NOT_FAST
    return document


def _colons_outside_strings(raw: bytes) -> int:
    """Colons that are JSON syntax (exact when no string holds an escaped quote)."""
    return _count_outside_strings(raw, b":") if b":" in raw else 0


def canonical(document: Any, raw: bytes) -> bool:
    """Can BentoML parse these bytes to what we parsed? Then re-encoding them is waste.

    Yes for `{"data": [...]}` (with or without on_error) holding no `\\u` escapes (a lone
    surrogate is fine for Python's parser, not for BentoML's). A number too large for a
    float (1e400) becomes inf in both parsers; the schema rejects it.
    """
    return (
        isinstance(document, dict)
        and "data" in document
        and b"\\u" not in raw
        and b"\x00" not in raw  # UTF-16/32: Python's parser detects them, BentoML's does not
    )


def body_from_json(document: Any, bounds: TableBounds,
                   option_keys: frozenset[str] = frozenset()) -> PredictionBody:
    if not isinstance(document, dict):
        raise ApiError(
            ErrorCode.BAD_REQUEST, 'the body must be a JSON object such as {"data": [rows]}'
        )
    unknown = sorted(set(document) - TOP_LEVEL_KEYS - option_keys)
    if unknown:
        optional = ", ".join(["on_error", *sorted(option_keys)])
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"unknown top-level key(s) {', '.join(map(repr, unknown))}; expected one of "
            f"{', '.join(ROW_KEYS)}, and optionally {optional}",
        )
    given = [key for key in ROW_KEYS if key in document]
    if len(given) != 1:
        raise ApiError(
            ErrorCode.BAD_REQUEST, f"send exactly one of {', '.join(ROW_KEYS)} (got {len(given)})"
        )
    on_error = document.get("on_error", "fail")
    if given[0] == "dataframe_split":
        records = records_from_split(document["dataframe_split"], bounds)
    else:
        records = document[given[0]]
        if not isinstance(records, list):
            raise ApiError(ErrorCode.BAD_REQUEST, f"`{given[0]}` must be a list of row objects")
    return PredictionBody(records, on_error,
                          options={key: document[key] for key in option_keys if key in document})


def records_from_split(split: Any, bounds: TableBounds) -> list[dict[str, Any]]:
    """MLflow's column-oriented form: {"columns": [...], "data": [[...], ...]}."""
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        raise ApiError(
            ErrorCode.BAD_REQUEST, '`dataframe_split` must be {"columns": [...], "data": [[...]]}'
        )
    columns, rows = split["columns"], split.get("data")
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise ApiError(ErrorCode.BAD_REQUEST, "`dataframe_split.columns` must be distinct strings")
    if not isinstance(rows, list):
        raise ApiError(ErrorCode.BAD_REQUEST, "`dataframe_split.data` must be a list of rows")
    bounds.check_field_count(len(columns), "`dataframe_split.columns`")
    bounds.check_names(columns, "`dataframe_split.columns`")
    bounds.check_rows(len(rows))
    # the canonical form repeats every column name on every row
    bounds.check_decoded_bytes(json_key_bytes(len(rows), columns), "`dataframe_split`")
    problems = [
        {"row": i, "field": None, "problem": f"expected a list of {len(columns)} values"}
        for i, row in enumerate(rows)
        if not isinstance(row, list) or len(row) != len(columns)
    ]
    if problems:
        raise ApiError(
            ErrorCode.BAD_REQUEST, f"{len(problems)} row(s) do not match `columns`", problems
        )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def records_from_csv(raw: bytes, bounds: TableBounds) -> list[dict[str, Any]]:
    """CSV with a header row. Values stay text; the schema parses numbers, dates, booleans.

    Streamed with the csv module: rows, columns and record length are counted as it reads,
    so a body that would decode to too much stops at the first record over a bound.
    """
    lines = _CsvLines(raw, bounds)
    reader = csv.reader(lines)
    try:
        header = _csv_header(next(reader, None), bounds)
        lines.record_done()
        records: list[dict[str, Any]] = []
        width = len(header)
        per_row_key_bytes = json_key_bytes(1, header)
        for fields in reader:
            lines.record_done()
            if not fields:  # a blank line, as pandas skips it
                continue
            if len(fields) > width:
                raise ApiError(
                    ErrorCode.INVALID_CSV,
                    f"line {reader.line_num}: {len(fields)} fields, the header has {width}",
                )
            bounds.check_rows(len(records) + 1)
            bounds.check_cells((len(records) + 1) * width, "CSV values")
            bounds.check_decoded_bytes(
                len(raw) + (len(records) + 1) * per_row_key_bytes, "the CSV body"
            )
            records.append({
                name: value for name, value in zip(header, fields, strict=False)
                if value not in CSV_MISSING
            })
    except csv.Error as exc:
        raise ApiError(
            ErrorCode.INVALID_CSV, f"cannot read the CSV body: line {reader.line_num}: {exc}"
        ) from None
    except UnicodeDecodeError:
        raise ApiError(ErrorCode.INVALID_CSV, "the CSV body is not UTF-8 text") from None
    return records


class _CsvLines:
    """Text lines for csv.reader; a record (one or more lines) is bounded as it grows."""

    def __init__(self, raw: bytes, bounds: TableBounds) -> None:
        self._lines = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline="")
        self._bounds = bounds
        self._record_chars = 0

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        line = self._lines.readline(self._bounds.max_line_chars + 1)
        if not line:
            raise StopIteration
        self._record_chars += len(line)
        if self._record_chars > self._bounds.max_line_chars:
            raise ApiError(
                ErrorCode.LINE_TOO_LONG,
                f"a CSV record is longer than the limit of {self._bounds.max_line_chars} "
                "characters",
            )
        return line

    def record_done(self) -> None:
        self._record_chars = 0


def _csv_header(fields: list[str] | None, bounds: TableBounds) -> list[str]:
    if not fields:
        raise ApiError(ErrorCode.INVALID_CSV, "the CSV body has no header row")
    bounds.check_field_count(len(fields), "the CSV header")
    bounds.check_names(fields, "the CSV header")
    header = [name or f"Unnamed: {i}" for i, name in enumerate(fields)]
    if len(set(header)) != len(header):
        raise ApiError(ErrorCode.INVALID_CSV, "the CSV header repeats a column name")
    return header


class PredictionIntake:
    """ASGI middleware for the prediction routes: limits, parsing, one body shape."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_rows: int,
        max_cells: int | None = None,
        feature_names: Iterable[str] = (),
        columnar_min_rows: int | None = None,
        max_explain_rows: int | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # from this many rows on a request goes on as columns (None: never)
        self.columnar_min_rows = columnar_min_rows
        self.bounds = TableBounds.for_service(
            max_rows, max_body_bytes, max_cells, list(feature_names)
        )
        # /explain: the same bounds but its own row limit (AGBENTO_MAX_EXPLAIN_ROWS)
        self.explain_bounds = self.bounds.with_rows(
            RowLimit.for_explanations(max_rows, max_explain_rows or max_rows))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        route = route_for(scope["path"])
        if not route.prediction:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = request_id_from(headers)
        # what the endpoint finds on the request's state besides BentoML's parse
        state: dict[str, Any] = {}
        try:
            raw = await read_body(headers, receive, self.max_body_bytes)
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            on_error = query.get("on_error", [None])[-1]
            bounds, keys = ((self.explain_bounds, EXPLAIN_KEYS) if route.explanation
                            else (self.bounds, frozenset()))
            parsed = read_prediction_body(headers.get("content-type"), raw, bounds, on_error,
                                          keys)
            if route.explanation:
                state[EXPLAIN_STATE_KEY] = ExplainOptions.read(parsed.options, query)
            columnar = (self.columnar_min_rows is not None
                        and parsed.row_count >= self.columnar_min_rows)
            # columns skip BentoML's parse: it gets a stub body, the endpoint the table
            body = (json.dumps({"data": [], "on_error": parsed.on_error}).encode() if columnar
                    else parsed.to_json())
        except ApiError as error:
            await error_response(error, request_id)(scope, receive, send)
            return
        if columnar:
            state[STATE_KEY] = parsed.as_table()
        # into the request's own state dict, which the layers outside hold too (the request
        # log reads the rows the endpoint counts there: a copy left it 0 for columnar ones)
        scope.setdefault("state", {}).update(state)
        kept = [
            (k, v) for k, v in scope["headers"]
            if k.lower() not in (b"content-type", b"content-length", b"x-request-id",
                                 b"transfer-encoding", b"content-encoding")
        ]
        scope = {
            **scope,
            "headers": [
                *kept,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
        await self.app(scope, _replay(body, receive), send)


async def read_body(
    headers: Headers, receive: Receive, max_body_bytes: int, decompress: bool = False
) -> bytes:
    """A request body of at most `max_body_bytes`, refused (413) before it is all read.

    `decompress`: accept gzip and deflate bodies (tritonclient can send them), bounded by the
    same limit after decompression.
    """
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity" and not (decompress and encoding in DECOMPRESSORS):
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE, "compressed request bodies are not supported"
        )
    raw = await _read_raw(headers, receive, max_body_bytes)
    if encoding == "identity":
        return raw
    inflater = zlib.decompressobj(DECOMPRESSORS[encoding])
    try:
        body = inflater.decompress(raw, max_body_bytes + 1)
    except zlib.error as exc:
        raise ApiError(ErrorCode.BAD_REQUEST,
                       f"the {encoding} body does not decompress: {exc}") from None
    if len(body) > max_body_bytes:
        raise body_too_large(len(body), max_body_bytes)
    if not inflater.eof:
        raise ApiError(ErrorCode.BAD_REQUEST, f"the {encoding} body is truncated")
    return body


# zlib window bits: gzip header, or zlib (HTTP's "deflate")
DECOMPRESSORS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def _read_raw(headers: Headers, receive: Receive, max_body_bytes: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise body_too_large(int(declared), max_body_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(ErrorCode.BAD_REQUEST, "the client disconnected mid-body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body_bytes:
            raise body_too_large(size, max_body_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def body_too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        ErrorCode.BODY_TOO_LARGE,
        f"the body ({size} bytes or more) exceeds the limit of {limit} bytes "
        "(AGBENTO_MAX_BODY_BYTES); split the request or use the batch client",
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands over `body` once, then listens to the client as before."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
