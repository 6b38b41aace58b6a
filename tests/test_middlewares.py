"""Our ASGI layers in-process, with Starlette's TestClient (as Starlette tests its own)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from agbento.http.overload import InflightLimit
from agbento.http.request_log import RequestLog


async def echo(request: Request) -> JSONResponse:
    if request.query_params.get("wait"):
        await asyncio.sleep(float(request.query_params["wait"]))
    return JSONResponse({"request_id": request.headers.get("x-request-id")})


APP = Starlette(routes=[Route(path, echo, methods=["GET", "POST"])
                        for path in ("/predict", "/livez", "/model/info")])


def test_inflight_limit_refuses_guarded_routes_beyond_the_bound() -> None:
    client = TestClient(InflightLimit(APP, limit=0))
    refused = client.post("/predict", headers={"X-Request-ID": "over-1"})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
    assert refused.json()["request_id"] == "over-1" == refused.headers["x-request-id"]
    # probes and other routes are never refused by it
    assert client.get("/livez").status_code == 200
    assert client.get("/model/info").status_code == 200


def test_inflight_limit_counts_requests_in_flight() -> None:
    limit = InflightLimit(APP, limit=1)
    client = TestClient(limit)
    assert client.post("/predict").status_code == 200
    assert limit.inflight == 0  # released after the answer


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append(getattr(record, "fields", {}))


@pytest.fixture
def lines() -> Lines:
    handler = Lines()
    logger = logging.getLogger("agbento.requests")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_request_log_gives_every_request_an_id_and_one_line(lines: Lines) -> None:
    client = TestClient(RequestLog(InflightLimit(APP, limit=0), model_tag="m:1"))
    answer = client.post("/model/info")
    given = answer.json()["request_id"]
    assert given and len(given) == 32  # a fresh id, seen by the layers inside
    refused = client.post("/predict", headers={"X-Request-ID": "mine"})
    client.get("/livez")  # probes are not logged
    assert [(f["request_id"], f["status"]) for f in lines.fields] == [(given, 200),
                                                                       ("mine", 503)]
    assert lines.fields[1]["error"] == "overloaded" == refused.json()["error"]["code"]
    assert lines.fields[1]["model"] == "m:1"


def test_request_log_replaces_an_insane_request_id(lines: Lines) -> None:
    client = TestClient(RequestLog(APP, model_tag="m:1"))
    answer = client.get("/model/info", headers={"X-Request-ID": "bad id;" * 20})
    (line,) = lines.fields
    assert answer.json()["request_id"] == line["request_id"]
    assert len(line["request_id"]) == 32 and json.dumps(line)
