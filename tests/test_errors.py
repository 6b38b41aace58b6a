"""The error catalogue: every code once, with its status, in one shape, documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agbento.core.errors import MAX_ERROR_DETAILS, ApiError, ErrorCode

ROOT = Path(__file__).resolve().parent.parent


def test_every_code_has_an_error_status() -> None:
    for code in ErrorCode:
        assert 400 <= code.status < 600, code
        assert code.value == code.name.lower()
    assert ErrorCode.INVALID_ROWS.status == 422 and ErrorCode.MODEL_ERROR.status == 503


def test_an_error_answers_in_the_one_shape() -> None:
    details = [{"row": i, "field": "x", "problem": "bad"} for i in range(MAX_ERROR_DETAILS + 5)]
    error = ApiError(ErrorCode.INVALID_ROWS, "many problems", details, retry_after_s=None)
    body = error.body("req-1")
    assert body == {"error": {"code": "invalid_rows", "message": "many problems",
                              "details": details[:MAX_ERROR_DETAILS]}, "request_id": "req-1"}
    assert error.status == 422 and str(error) == "422 invalid_rows: many problems"


@pytest.mark.parametrize("code", list(ErrorCode))
def test_the_docs_document_every_code(code: ErrorCode) -> None:
    assert re.search(rf"`{code.value}`", (ROOT / "docs" / "predict.md").read_text()), code


def test_no_code_is_written_as_a_bare_string_beside_a_status() -> None:
    """ApiError takes an ErrorCode; a (status, "code") pair by hand is the old habit."""
    for path in [*(ROOT / "agbento").rglob("*.py"), ROOT / "service.py"]:
        assert not re.search(r"ApiError\(\s*\d{3}", path.read_text()), path


def test_the_routers_plain_404_and_405_answer_in_our_shape() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from agbento.http.unrouted import UnroutedErrors

    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hello", status_code=404)  # a handler's own 404 text...

    app = Starlette(routes=[Route("/predict", hello, methods=["POST"])])
    client = TestClient(UnroutedErrors(app))
    missing = client.get("/nowhere", headers={"X-Request-ID": "r-1"})
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "no endpoint at "
                                        "/nowhere", "details": []}, "request_id": "r-1"}
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["x-request-id"] == wrong.json()["request_id"]
    # ...is rewritten too: text/plain from a 404 is the router's shape, never a client's body
    assert client.post("/predict").json()["error"]["code"] == "not_found"
