"""Chaos: an exception anywhere in the service answers at once, in our shape, and is logged.

In-process, the API service's real ASGI app (BentoML's middleware and all of ours, the
model service as a local dependency) takes a fault in each layer in turn. Through a real
`bentoml serve`, faults come from `tests/chaos/sitecustomize.py` on the server's PYTHONPATH:
the product code has no test hooks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from agbento.core.settings import get_settings
from agbento.http.access import AccessGate
from agbento.http.guard import INTERNAL_ERROR_MESSAGE, ErrorGuard
from agbento.http.overload import InflightLimit
from agbento.models.store import ModelCard
from agbento.monitoring.metrics import INTERNAL_ERRORS, MODEL_READY
from agbento.monitoring.prediction_log import PredictionSampler
from agbento.runtime.cache import PredictionCache
from agbento.runtime.contract import PredictionContract
from agbento.runtime.inference import MODEL_RETRY_S, TabularRuntime
from tests.helpers import metric_samples, penguin_rows, total
from tests.servers import BentoServer, start_server
from tests.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parent.parent
CHAOS = Path(__file__).resolve().parent / "chaos"
SECRET = "chaos-secret-do-not-leak"  # what the injected exceptions say; must never be answered
# A bound on waiting, far below BentoML's 60 s traffic timeout that used to be the only answer.
ANSWER_WITHIN_S = 10
_unique = itertools.count(1)


def fresh_rows(n: int) -> list[dict[str, Any]]:
    """Rows no earlier request sent, so the prediction cache cannot answer them."""
    rows = penguin_rows("species", n, seed=next(_unique))
    for row in rows:
        row["bill_length_mm"] = round(40 + next(_unique) * 1e-4, 6)
    return rows


def raising(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"injected ({SECRET})")


async def araising(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"injected ({SECRET})")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[dict[str, Any]]:
        return [getattr(r, "fields", {}) for r in self.records
                if r.name == "agbento.core.errors" and r.levelno == logging.ERROR]


@dataclass
class InProcess:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    service: ModuleType

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        call = self.client.request(method, path, **kwargs)
        return self.loop.run_until_complete(asyncio.wait_for(call, ANSWER_WITHIN_S))

    def predict(self, rows: list[dict[str, Any]], **headers: str) -> httpx.Response:
        return self.request("POST", "/predict", json={"data": rows}, headers=headers)

    @property
    def runtime(self) -> TabularRuntime:
        import bentoml

        service = bentoml.get_current_service()
        if get_settings().topology == "split":  # the dependency, in-process here
            return service.model_service.versions.current
        return service.served.scorer.runtime  # fused: this worker's own


@pytest.fixture(scope="module")
def app(tiny_models: TinyModels) -> Iterator[InProcess]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGBENTO_MODEL", tiny_models.multiclass.tag)
        get_settings.cache_clear()
        import service

        assert service.card.tag == tiny_models.multiclass.tag
        # signal handlers are for a server's main thread, not for pytest's
        patch.setattr(service, "bound_after_sigterm", lambda seconds: None)
        asgi = service.AgBento.to_asgi(is_main=True)
        loop = asyncio.new_event_loop()
        lifespan = asgi.router.lifespan_context(asgi)
        loop.run_until_complete(lifespan.__aenter__())
        transport = httpx.ASGITransport(asgi, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://in-process")
        try:
            yield InProcess(loop, client, service)
        finally:
            loop.run_until_complete(client.aclose())
            loop.run_until_complete(lifespan.__aexit__(None, None, None))
            loop.close()
            get_settings.cache_clear()


@pytest.fixture
def log() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("agbento")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def assert_internal_error(response: httpx.Response) -> str:
    assert response.status_code == 500, response.text
    body = response.json()
    assert body["error"] == {"code": "internal_error", "message": INTERNAL_ERROR_MESSAGE,
                             "details": []}
    assert body["request_id"] and response.headers["x-request-id"] == body["request_id"]
    assert SECRET not in response.text
    return body["request_id"]


# layer -> how to break it; every one must answer 500 internal_error
FAULTS: dict[str, Callable[[pytest.MonkeyPatch, ModuleType], None]] = {
    "request log": lambda mp, svc: mp.setattr("agbento.http.request_log.request_id_from", raising),
    "access gate": lambda mp, svc: mp.setattr(AccessGate, "__call__", araising),
    "inflight limit": lambda mp, svc: mp.setattr(InflightLimit, "__call__", araising),
    "intake": lambda mp, svc: mp.setattr("agbento.http.intake.read_prediction_body", raising),
    "contract accept": lambda mp, svc: mp.setattr(PredictionContract, "accept", raising),
    "contract place": lambda mp, svc: mp.setattr(PredictionContract, "place", raising),
    "contract render": lambda mp, svc: mp.setattr(PredictionContract, "render", raising),
    "cache": lambda mp, svc: mp.setattr(PredictionCache, "lookup", araising),
    "metrics": lambda mp, svc: mp.setattr("agbento.runtime.served.observe_inputs", raising),
    "prediction log": lambda mp, svc: mp.setattr(PredictionSampler, "maybe_log", raising),
    "model call": lambda mp, svc: mp.setattr(TabularRuntime, "score_groups", raising),
    # before our handler's try: BentoML's own handler answers its bare 500
    "bentoml app": lambda mp, svc: mp.setattr("agbento.http.endpoints.request_id_from",
                                              raising),
}


@pytest.mark.parametrize("layer", list(FAULTS))
def test_a_fault_in_any_layer_answers_500_at_once(app: InProcess, log: Records,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  layer: str) -> None:
    rows = fresh_rows(2)
    before = INTERNAL_ERRORS._value.get()
    with monkeypatch.context() as patch:
        FAULTS[layer](patch, app.service)
        response = app.predict(rows, **{"X-Request-ID": f"chaos-{layer.replace(' ', '-')}"})
    request_id = assert_internal_error(response)
    assert request_id == f"chaos-{layer.replace(' ', '-')}"  # the caller's id is kept
    assert INTERNAL_ERRORS._value.get() == before + 1
    (line,) = log.errors()
    assert line["request_id"] == request_id and line["path"] == "/predict"
    if layer != "bentoml app":  # there BentoML caught it and logged the traceback itself
        assert line["exception_type"] == "RuntimeError"
        assert SECRET in line["traceback"] and "Traceback" in line["traceback"]
    # the next good request is served
    assert app.predict(rows).status_code == 200


def test_a_fault_in_a_mounted_route_answers_500(app: InProcess, log: Records,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ModelCard, "info", raising)
    assert_internal_error(app.request("GET", "/model/info"))
    (line,) = log.errors()  # once: the route's own bare 500 is replaced, not logged again
    assert line["exception_type"] == "RuntimeError" and SECRET in line["traceback"]
    monkeypatch.undo()
    assert app.request("GET", "/model/info").status_code == 200


def test_a_broken_model_is_503_until_its_warm_up_rows_score_again(
    app: InProcess, log: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = app.runtime
    monkeypatch.setattr(runtime, "retry_s", 0.2)
    def broken(self: TabularRuntime, rows: list[list[Any]]) -> Any:
        raise RuntimeError(f"injected ({SECRET})")

    monkeypatch.setattr(TabularRuntime, "_predict", broken)
    first = app.predict(fresh_rows(3))
    assert first.status_code == 503, first.text
    assert first.json()["error"]["code"] == "model_error"
    assert first.headers["retry-after"] == str(MODEL_RETRY_S)
    assert SECRET not in first.text
    assert not runtime.ready and MODEL_READY._value.get() == 0
    again = app.predict(fresh_rows(3))
    assert again.json()["error"]["code"] == "model_error"
    # logged once per fault, not per row or request
    faults = [r for r in log.records if r.name == "agbento.runtime.inference" and r.exc_info]
    assert len(faults) == 1 and SECRET in str(faults[0].exc_info[1])
    monkeypatch.undo()  # the model works again: the re-try thread notices
    deadline = time.monotonic() + 10
    while not runtime.ready and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.ready and MODEL_READY._value.get() == 1
    assert app.predict(fresh_rows(3)).status_code == 200


def test_a_row_only_the_model_rejects_is_422_with_the_type_only(
    app: InProcess, log: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TabularRuntime._predict

    def rejects_huge_bills(self: TabularRuntime, rows: list[list[Any]]) -> Any:
        if any(12345.0 in row for row in rows):
            raise ValueError(f"cannot score 12345 ({SECRET})")
        return original(self, rows)

    monkeypatch.setattr(TabularRuntime, "_predict", rejects_huge_bills)
    rows = fresh_rows(2)
    rows[1]["bill_length_mm"] = 12345.0
    response = app.predict(rows, **{"X-Request-ID": "one-bad-row"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "model_rejected_rows"
    assert error["details"] == [{"row": 1, "field": None,
                                 "problem": "the model could not score this row (ValueError)"}]
    assert SECRET not in response.text
    assert app.runtime.ready
    (line,) = [getattr(r, "fields", {}) for r in log.records if r.msg == "model rejected rows"]
    assert line["request_id"] == "one-bad-row" and line["rows"][0]["row"] == 1
    assert SECRET in line["rows"][0]["message"]


# -- the guard on its own: what it does once a response has started ------------------------


def run_guarded(app: Callable[..., Any]) -> tuple[list[dict[str, Any]], BaseException | None]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    try:
        asyncio.run(ErrorGuard(app)(scope, receive, send))
    except Exception as exc:  # noqa: BLE001 - what the server would see
        return sent, exc
    return sent, None


def test_a_fault_after_the_response_started_is_raised_so_the_server_closes_it() -> None:
    async def half_sent(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[1,", "more_body": True})
        raise RuntimeError(SECRET)

    sent, raised = run_guarded(half_sent)
    assert isinstance(raised, RuntimeError)  # uvicorn closes the connection on it
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


def test_a_fault_after_a_complete_response_is_logged_not_raised() -> None:
    async def sent_then_failed(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})
        raise RuntimeError(SECRET)

    before = INTERNAL_ERRORS._value.get()
    sent, raised = run_guarded(sent_then_failed)
    assert raised is None and len(sent) == 2
    assert INTERNAL_ERRORS._value.get() == before + 1


def test_a_bare_500_from_inside_is_answered_in_our_shape() -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"Internal Server Error"})

    sent, raised = run_guarded(bare)
    assert raised is None
    start, body = sent
    assert start["status"] == 500 and (b"content-type", b"application/json") in start["headers"]
    assert b'"internal_error"' in body["body"]


# -- through a real `bentoml serve` ----------------------------------------------------------


@pytest.fixture(scope="module")
def chaos_server(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory,
                 topology: str) -> Iterator[BentoServer]:
    flag = tmp_path_factory.mktemp("chaos") / "model-is-broken"
    path = os.pathsep.join(p for p in (str(CHAOS), os.environ.get("PYTHONPATH", "")) if p)
    # one worker: in fused, each worker finds its own model broken (and /readyz asks one)
    with start_server(ROOT, tiny_models.multiclass.tag, PYTHONPATH=path,
                      CHAOS_MODEL_FLAG=str(flag), AGBENTO_TOPOLOGY=topology,
                      AGBENTO_API_WORKERS="1") as server:
        server.flag = flag  # type: ignore[attr-defined]
        yield server


def post(server: BentoServer, rows: list[dict[str, Any]], **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", json={"data": rows}, headers=headers,
                      timeout=ANSWER_WITHIN_S)


FAULTY = {
    "an ASGI layer (PredictionIntake)": lambda rows: ({"X-Chaos": "1"}, rows),
    "inside BentoML's app (the contract)": lambda rows: ({}, [{**rows[0], "chaos": 1}]),
}


@pytest.mark.integration
@pytest.mark.parametrize("where", list(FAULTY))
def test_served_fault_answers_500_at_once(chaos_server: BentoServer, where: str) -> None:
    headers, rows = FAULTY[where](fresh_rows(1))
    start = time.perf_counter()
    response = post(chaos_server, rows, **headers)  # raises on a hang: no answer in 10 s
    elapsed_ms = (time.perf_counter() - start) * 1000
    print(f"\n{where}: {response.status_code} in {elapsed_ms:.0f} ms")  # the figure
    request_id = assert_internal_error(response)
    log = chaos_server.log()
    assert request_id in log and SECRET in log  # the traceback is in the log, not the answer
    assert post(chaos_server, fresh_rows(1)).status_code == 200


@pytest.mark.integration
def test_served_good_requests_survive_faulty_ones(chaos_server: BentoServer) -> None:
    requests = []
    for i in range(40):
        requests.append(("good", {}, fresh_rows(2)))
        headers, rows = list(FAULTY.values())[i % 2](fresh_rows(2))
        requests.append(("faulty", headers, rows))

    def send(request: tuple[str, dict[str, str], list[dict[str, Any]]]) -> tuple[str, int, str]:
        kind, headers, rows = request
        response = post(chaos_server, rows, **headers)
        return kind, response.status_code, response.text

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, requests))
    good = [status for kind, status, _ in results if kind == "good"]
    faulty = [(status, text) for kind, status, text in results if kind == "faulty"]
    assert good == [200] * 40
    assert all(status == 500 and '"internal_error"' in text for status, text in faulty)


@pytest.mark.integration
def test_served_broken_model_is_503_not_ready_then_heals(chaos_server: BentoServer) -> None:
    flag: Path = chaos_server.flag  # type: ignore[attr-defined]
    flag.touch()
    try:
        for _ in range(3):
            response = post(chaos_server, fresh_rows(3))
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "model_error"
            assert response.headers["retry-after"] == str(MODEL_RETRY_S)
            assert SECRET not in response.text
        assert httpx.get(f"{chaos_server.url}/readyz", timeout=10).status_code == 503
        assert httpx.get(f"{chaos_server.url}/health", timeout=10).status_code == 503
        assert total(metric_samples(chaos_server.url), "agbento_model_ready") == 0
    finally:
        flag.unlink()
    deadline = time.monotonic() + 30
    while httpx.get(f"{chaos_server.url}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "not ready again within 30 s"
        time.sleep(0.5)
    assert post(chaos_server, fresh_rows(3)).status_code == 200
    assert total(metric_samples(chaos_server.url), "agbento_model_ready") == 1
    # the traceback once per fault, not once per row or request
    assert chaos_server.log().count("fails on its warm-up rows") == 1
