"""The HTTP layer every other layer shares: request ids and JSON answers.

It sits at the bottom of the import graph (it imports only `errors`), so middlewares that
refuse a request need nothing of the model, the store or the contract.
"""

from __future__ import annotations

import random
import re
from typing import Any

from starlette.responses import JSONResponse, Response

from agbento.core.errors import ApiError

REQUEST_ID_HEADER = "X-Request-ID"
# The model reference (name:version) on answers that are tables, which have no body field.
MODEL_HEADER = "X-Agbento-Model"
# Table media types, as request bodies and as answers (server and batch client alike).
ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
PARQUET_TYPES = frozenset({PARQUET, "application/x-parquet", "application/parquet"})
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(headers: Any) -> str:
    """The caller's X-Request-ID when it is sane, else a fresh one."""
    given = headers.get(REQUEST_ID_HEADER) if headers is not None else None
    if given and _REQUEST_ID_OK.match(given):
        return given
    # 128 random bits as uuid4().hex writes them, without its urandom call (1.6 -> 0.25 us)
    # (an id must be unique, not unguessable; `random` reseeds in every new process)
    return f"{random.getrandbits(128):032x}"


def json_response(
    body: dict[str, Any] | bytes, status: int, request_id: str, retry_after_s: int | None = None
) -> Response:
    """A JSON answer (a dict, or bytes already rendered) with the request id header."""
    headers = {REQUEST_ID_HEADER: request_id}
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    if isinstance(body, bytes):
        return Response(body, status_code=status, headers=headers,
                        media_type="application/json")
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(error: ApiError, request_id: str) -> Response:
    """`error` in our error shape, with its status and Retry-After."""
    return json_response(error.body(request_id), error.status, request_id, error.retry_after_s)
