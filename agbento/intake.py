"""Prediction request bodies: read within limits, parsed, brought to one shape.

Clients send rows as `{"data": [...]}`, as MLflow serving's `{"dataframe_split": ...}` or
`{"dataframe_records": [...]}`, or as a CSV or Parquet body. `read_prediction_body` turns
any of them into `{"data": [records], "on_error": ...}` or raises an `ApiError` (400 not
JSON or wrong shape, 413 too large, 415 unsupported content type).

`PredictionIntake` is the ASGI middleware that applies it before BentoML parses the body:
BentoML's own parser then only ever sees canonical JSON, so every rejection has our error
shape, and an oversized body is refused before it is read into memory.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agbento.contract import (
    ON_ERROR_CHOICES,
    json_response,
    request_id_from,
    too_many_rows,
)
from agbento.errors import ApiError

JSON_TYPES = frozenset({"application/json", "text/json"})
CSV_TYPES = frozenset({"text/csv", "application/csv"})
PARQUET_TYPES = frozenset(
    {"application/vnd.apache.parquet", "application/x-parquet", "application/parquet"}
)
ROW_KEYS = ("data", "dataframe_records", "dataframe_split")
TOP_LEVEL_KEYS = frozenset({*ROW_KEYS, "on_error"})


@dataclass
class PredictionBody:
    records: list[Any]
    on_error: str = "fail"
    # The client's own bytes, when they can go on to BentoML unchanged (see `canonical`).
    raw: bytes | None = None

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
            raise ApiError(400, "invalid_json", "the body holds invalid unicode") from None


def media_type(content_type: str | None) -> str:
    return (content_type or "application/json").split(";", 1)[0].strip().lower()


def read_prediction_body(
    content_type: str | None, raw: bytes, max_rows: int, on_error: str | None = None
) -> PredictionBody:
    """Any supported body -> canonical records; `on_error` comes from the query for files."""
    kind = media_type(content_type)
    if kind in JSON_TYPES or kind.endswith("+json"):
        document = parse_json(raw)
        body = body_from_json(document)
        if on_error is not None:
            body.on_error = on_error
        if canonical(document, raw) and body.on_error == document.get("on_error", "fail"):
            body.raw = raw
    elif kind in CSV_TYPES:
        body = PredictionBody(records_from_csv(raw), on_error or "fail")
    elif kind in PARQUET_TYPES:
        body = PredictionBody(records_from_parquet(raw), on_error or "fail")
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {kind!r} is not supported; send application/json, text/csv or "
            "application/vnd.apache.parquet",
        )
    if body.on_error not in ON_ERROR_CHOICES:
        raise ApiError(
            400, "bad_request", f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}"
        )
    if not body.records:
        raise ApiError(400, "empty_data", "the request has no rows")
    if len(body.records) > max_rows:
        raise too_many_rows(len(body.records), max_rows)
    return body


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ApiError(400, "invalid_json", f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ApiError(400, "invalid_json", f"{name} is not valid JSON; send null or a number")


def _nan_is_null(name: str) -> Any:
    return None if name == "NaN" else _reject_constant(name)


def parse_json(raw: bytes, nan_is_null: bool = False) -> Any:
    """`nan_is_null`: read a NaN literal as a missing value (tensor clients send NaN)."""
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send {\"data\": [rows]}")
    try:
        return json.loads(
            raw,
            object_pairs_hook=_no_duplicates,
            parse_constant=_nan_is_null if nan_is_null else _reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not UTF-8 text") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON is nested too deeply") from None


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


def body_from_json(document: Any) -> PredictionBody:
    if not isinstance(document, dict):
        raise ApiError(
            400, "bad_request", 'the body must be a JSON object such as {"data": [rows]}'
        )
    unknown = sorted(set(document) - TOP_LEVEL_KEYS)
    if unknown:
        raise ApiError(
            400,
            "bad_request",
            f"unknown top-level key(s) {', '.join(map(repr, unknown))}; expected one of "
            f"{', '.join(ROW_KEYS)}, and optionally on_error",
        )
    given = [key for key in ROW_KEYS if key in document]
    if len(given) != 1:
        raise ApiError(
            400, "bad_request", f"send exactly one of {', '.join(ROW_KEYS)} (got {len(given)})"
        )
    on_error = document.get("on_error", "fail")
    if given[0] == "dataframe_split":
        records = records_from_split(document["dataframe_split"])
    else:
        records = document[given[0]]
        if not isinstance(records, list):
            raise ApiError(400, "bad_request", f"`{given[0]}` must be a list of row objects")
    return PredictionBody(records, on_error)


def records_from_split(split: Any) -> list[dict[str, Any]]:
    """MLflow's column-oriented form: {"columns": [...], "data": [[...], ...]}."""
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        raise ApiError(
            400, "bad_request", '`dataframe_split` must be {"columns": [...], "data": [[...]]}'
        )
    columns, rows = split["columns"], split.get("data")
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise ApiError(400, "bad_request", "`dataframe_split.columns` must be distinct strings")
    if not isinstance(rows, list):
        raise ApiError(400, "bad_request", "`dataframe_split.data` must be a list of rows")
    problems = [
        {"row": i, "field": None, "problem": f"expected a list of {len(columns)} values"}
        for i, row in enumerate(rows)
        if not isinstance(row, list) or len(row) != len(columns)
    ]
    if problems:
        raise ApiError(
            400, "bad_request", f"{len(problems)} row(s) do not match `columns`", problems
        )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def records_from_csv(raw: bytes) -> list[dict[str, Any]]:
    """CSV with a header row. Values stay text; the schema parses numbers, dates, booleans."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=True)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_csv", f"cannot read the CSV body: {exc}") from None
    if frame.columns.duplicated().any():
        raise ApiError(400, "invalid_csv", "the CSV header repeats a column name")
    return [
        {k: v for k, v in row.items() if isinstance(v, str)} for row in frame.to_dict("records")
    ]


def records_from_parquet(raw: bytes) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        frame = pd.read_parquet(io.BytesIO(raw))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise ApiError(400, "invalid_parquet", f"cannot read the Parquet body: {exc}") from None
    return [
        {str(k): json_value(v) for k, v in row.items()} for row in frame.to_dict("records")
    ]


def json_value(value: Any) -> Any:
    """A cell from a file as a JSON value; infinities become text the schema rejects."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return json_value(float(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [json_value(v) for v in value]
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


class PredictionIntake:
    """ASGI middleware for the prediction routes: limits, parsing, one body shape."""

    def __init__(
        self, app: ASGIApp, paths: Iterable[str], max_body_bytes: int, max_rows: int
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.max_body_bytes = max_body_bytes
        self.max_rows = max_rows

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = request_id_from(headers)
        try:
            raw = await read_body(headers, receive, self.max_body_bytes)
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            on_error = query.get("on_error", [None])[-1]
            body = read_prediction_body(
                headers.get("content-type"), raw, self.max_rows, on_error
            ).to_json()
        except ApiError as error:
            response = json_response(error.body(request_id), error.status, request_id)
            await response(scope, receive, send)
            return
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
            415, "unsupported_media_type", "compressed request bodies are not supported"
        )
    raw = await _read_raw(headers, receive, max_body_bytes)
    if encoding == "identity":
        return raw
    inflater = zlib.decompressobj(DECOMPRESSORS[encoding])
    try:
        body = inflater.decompress(raw, max_body_bytes + 1)
    except zlib.error as exc:
        raise ApiError(400, "bad_request",
                       f"the {encoding} body does not decompress: {exc}") from None
    if len(body) > max_body_bytes:
        raise body_too_large(len(body), max_body_bytes)
    if not inflater.eof:
        raise ApiError(400, "bad_request", f"the {encoding} body is truncated")
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
            raise ApiError(400, "bad_request", "the client disconnected mid-body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body_bytes:
            raise body_too_large(size, max_body_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def body_too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
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
